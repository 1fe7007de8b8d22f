package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// A body slower than BodyTimeout is cut off, whether or not the client
// accepts gzip answers (the answer's writer is then the gzip one, which
// must still reach the connection's deadline).
func TestBodyTimeout(t *testing.T) {
	srv := testkit.NewServer(t, testkit.Registry(t), server.Options{BodyTimeout: 100 * time.Millisecond, SweepInterval: -1})
	for _, enc := range []string{"", "gzip"} {
		t.Run("accept "+enc, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-ada\r\nContent-Type: application/json\r\nContent-Length: 100\r\n")
			if enc != "" {
				fmt.Fprintf(conn, "Accept-Encoding: %s\r\n", enc)
			}
			fmt.Fprintf(conn, "\r\n{\"device\":") // and nothing more
			// Bounded: a server that never cuts the body leaves the
			// connection open until this deadline.
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer to a stalled body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("a stalled body answered %s, want a failure", resp.Status)
			}
		})
	}
}
