// Package client is the HTTP client of the tether server API. It hides the
// HTTP library behind methods that take a context and return wire types and
// typed errors.
//
// Errors are *[Error] values wrapping a sentinel of package wire (or the
// network error), so errors.Is(err, wire.ErrUnauthorized) works, and
// [Transient] tells whether retrying can help. A request that gets no
// connection within the context's connect timeout ([WithConnectTimeout])
// fails with [ErrUnreachable].
//
// # Files
//
// client.go holds the Client, its options and the sending of one request;
// api.go a method per endpoint; events.go the event stream; token.go the
// bearer tokens; connect.go the connect timeout; body.go the streamed,
// compressed request bodies; error.go the errors.
package client
