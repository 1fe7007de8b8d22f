// Package client is the HTTP client of the tether server API. It hides the
// HTTP library behind methods that take a context and return wire types and
// typed errors.
//
// Errors are *[Error] values wrapping a sentinel of package wire (or the
// network error), so errors.Is(err, wire.ErrUnauthorized) works, and
// [Transient] tells whether retrying can help.
package client
