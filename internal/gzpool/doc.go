// Package gzpool reuses gzip writers and readers, which are large to
// allocate: writers for the client's request bodies and the server's
// answers, readers for the server's requests and the client's answers. Writers compress at
// BestSpeed: on tether's JSON about as well as the default level, at a
// fraction of the cost.
package gzpool
