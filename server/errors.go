package server

import (
	"net/http"

	"github.com/tethersync/tether/wire"
)

// fail writes err as a JSON error body, with the status wire.Code (the one
// table from error to status) gives it; the request's log line (see
// logRequest) carries err, and a server error's message is not sent. A
// client error's message is clipped to maxMessageBytes: whatever a
// handler quoted of the request, the answer stays small.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, status := wire.Code(err)
	n := noted(r.Context())
	n.code, n.err = code, err
	msg := err.Error()
	if status >= 500 {
		msg = "internal server error"
	} else {
		msg = clipTo(msg, maxMessageBytes)
	}
	writeJSON(w, status, wire.ErrorBody{Error: wire.ErrorDetail{Code: code, Message: msg}})
}
