package wire

// ErrorCode is one entry of the table from error to code and HTTP status
// that the server answers with and the client maps back.
type ErrorCode struct {
	// Err is the sentinel error.
	Err error
	// Code is the "code" of the error body (ErrorDetail.Code).
	Code string
	// Status is the HTTP status of the answer.
	Status int
}

// Codes returns every error code of the API, in the table's order: what
// docs/openapi.json lists (a test checks they agree).
func Codes() []ErrorCode {
	out := make([]ErrorCode, len(codes))
	for i, c := range codes {
		out[i] = ErrorCode{Err: c.err, Code: c.code, Status: c.status}
	}
	return out
}
