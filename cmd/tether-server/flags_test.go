package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
)

// flagOf names the flag of each field of server.Options and server.Limits,
// with a value that differs from the field's default; "" marks a field
// that only a Go program can set, with the reason in the comment.
var flagOf = map[string][2]string{
	"Auth":                  {"", ""}, // -tokens and the -jwt-* flags build it (loadAuth)
	"Strategies":            {"strategy", "items=server-wins"},
	"Resolvers":             {"", ""}, // Go functions
	"Deletes":               {"delete", "items=delete-wins"},
	"MaxBodyBytes":          {"max-body", "1000"},
	"Logger":                {"", ""}, // the command logs with slog's default logger
	"Limits":                {"", ""}, // its fields are checked one by one
	"MaxBatchRows":          {"max-batch-rows", "7"},
	"RateLimit":             {"rate", "7"},
	"RateBurst":             {"rate-burst", "7"},
	"MaxValueBytes":         {"max-value", "7"},
	"BodyTimeout":           {"body-timeout", "7s"},
	"MaxPageBytes":          {"max-page-bytes", "7"},
	"MaxCost":               {"max-cost", "7"},
	"CostWait":              {"cost-wait", "7s"},
	"MaxClockSkew":          {"max-clock-skew", "7s"},
	"AuthFailures":          {"auth-failures", "7"},
	"AuthFailureBurst":      {"auth-failure-burst", "7"},
	"MaxStreams":            {"max-streams", "7"},
	"SweepInterval":         {"sweep", "7s"},
	"Scopes":                {"", ""}, // Go functions (server.Scopes)
	"Authorize":             {"", ""}, // a Go function
	"Trusted":               {"trusted-user", "office"},
	"CaptureExternalWrites": {"capture-external", "true"},
	"CaptureInterval":       {"capture-interval", "7s"},
	"Now":                   {"", ""},                        // a clock for tests
	"LogRequests":           {"log-requests", "false"},       // set when the server starts (metricsConfig.start)
	"Observer":              {"metrics-addr", "127.0.0.1:0"}, // built when the server starts (metricsConfig.start)

	"MaxOpenSessions":      {"max-sessions", "7"},
	"SessionIdle":          {"session-idle", "7s"},
	"MaxSessionRows":       {"max-session-rows", "7"},
	"MaxSessionBytes":      {"max-session-bytes", "7"},
	"MaxTenantStagedBytes": {"max-tenant-staged", "7"},
	"DeviceActivity":       {"device-activity", "7s"},
	"SessionRetention":     {"session-retention", "7s"},
	"AuditRetention":       {"audit-retention", "7s"},
	"MaxUserDevices":       {"max-user-devices", "7"},
	"DeviceRetention":      {"device-retention", "7s"},
}

// setAtStart are the fields whose flags run turns into the field when the
// server starts, not parseFlags.
var setAtStart = map[string]bool{"LogRequests": true, "Observer": true}

// Every field of server.Options and server.Limits has a flag that sets
// it, or is named above as one only Go can set: a field added later
// without either fails here.
func TestEveryOptionHasAFlag(t *testing.T) {
	required := []string{"-schema", "schema.json", "-tokens", "tokens.json"}
	base, err := parseFlags(required)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []reflect.Value{reflect.ValueOf(&base.opts).Elem(), reflect.ValueOf(&base.opts.Limits).Elem()} {
		for i := range v.NumField() {
			field := v.Type().Field(i).Name
			t.Run(field, func(t *testing.T) {
				f, ok := flagOf[field]
				if !ok {
					t.Fatalf("%s.%s has no flag: add one to parseFlags (with a range check in config.check) and to flagOf", v.Type(), field)
				}
				if f[0] == "" {
					return
				}
				c, err := parseFlags(append(required, "-"+f[0]+"="+f[1]))
				if err != nil {
					t.Fatalf("-%s %s: %v", f[0], f[1], err)
				}
				if setAtStart[field] {
					return // the flag exists; run sets the field
				}
				got := reflect.ValueOf(&c.opts).Elem()
				if v.Type() != got.Type() {
					got = reflect.ValueOf(&c.opts.Limits).Elem()
				}
				if !changed(v.Field(i), got.Field(i)) {
					t.Errorf("-%s %s left %s at %v", f[0], f[1], field, got.Field(i))
				}
			})
		}
	}
}

// changed reports whether b differs from a: for a function, whether one
// is nil and the other not; for a map, whether their lengths differ.
func changed(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Func:
		return a.IsNil() != b.IsNil()
	case reflect.Map:
		return a.Len() != b.Len()
	}
	return !a.Equal(b)
}

// -help shows every limit's and retention's default.
func TestHelpShowsDefaults(t *testing.T) {
	out := captureStderr(t, func() {
		if _, err := parseFlags([]string{"-help"}); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parseFlags(-help) = %v, want flag.ErrHelp", err)
		}
	})
	for _, want := range []string{"-max-session-rows int", "(default 100000)", "-device-activity duration", "(default 720h0m0s)",
		"-session-retention duration", "-audit-retention duration", "(default 8760h0m0s)", "-device-retention duration", "-delete value"} {
		if !strings.Contains(out, want) {
			t.Errorf("-help lacks %q:\n%s", want, out)
		}
	}
}

// A delete policy other than the server's is refused when parsed.
func TestBadDeletePolicy(t *testing.T) {
	for _, v := range []string{"items", "items=older-wins", "=delete-wins"} {
		if _, err := parseFlags([]string{"-schema", "s.json", "-tokens", "t.json", "-delete", v}); err == nil {
			t.Errorf("-delete %q accepted", v)
		}
	}
}

// captureStderr returns what f writes to os.Stderr.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		b.ReadFrom(r)
		done <- b.String()
	}()
	f()
	os.Stderr = old
	w.Close()
	return <-done
}
