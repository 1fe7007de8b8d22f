// Package wire holds the types exchanged between the tether client and
// server over HTTP, and the table of error codes both sides share.
//
// All bodies are JSON. Column values in [Row.Values] are in the canonical
// form of package entity: strings, numbers, booleans, null, base64 for
// blobs, [entity.TimeFormat] text for times and JSON text for json columns.
package wire
