// Package gzpool reuses gzip writers, which are large to allocate, for the
// client's request bodies and the server's answers. They compress at
// BestSpeed: on tether's JSON about as well as the default level, at a
// fraction of the cost.
package gzpool
