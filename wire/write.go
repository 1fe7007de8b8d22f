package wire

// WriteRequest is the body of POST /v1/write: rows a trusted back office
// writes as one push session of the server's own (server.Server.Write).
// Rows are pushed rows (one or several tables, in any order); their HLC
// may be empty, and the server then stamps them with its clock.
type WriteRequest struct {
	// Request identifies the write, 1 to 64 letters, digits and dashes:
	// the same request sent again (a retry after a lost answer) gets the
	// first answer and applies nothing twice, for as long as the server
	// keeps committed sessions. It is the session's id, so it must not be
	// any other session's of the tenant.
	Request string `json:"request"`
	Rows    []Row  `json:"rows"`
}

// WriteResult is the answer to POST /v1/write: the version of the commit,
// the rows it applied and the conflicts it settled, as a push commit's
// (Commit).
type WriteResult struct {
	Version   int64      `json:"version"`
	Applied   int        `json:"applied"`
	Conflicts []Conflict `json:"conflicts,omitempty"`
}
