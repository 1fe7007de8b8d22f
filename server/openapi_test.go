package server_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// openAPI is what the test reads of docs/openapi.json.
type openAPI struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas   map[string]json.RawMessage `json:"schemas"`
		Responses map[string]struct {
			Codes   []string `json:"x-codes"`
			Content map[string]struct {
				Schema struct {
					AllOf []struct {
						Properties struct {
							Error struct {
								Properties struct {
									Code struct {
										Enum []string `json:"enum"`
									} `json:"code"`
								} `json:"properties"`
							} `json:"error"`
						} `json:"properties"`
					} `json:"allOf"`
				} `json:"schema"`
			} `json:"content"`
		} `json:"responses"`
		Parameters map[string]json.RawMessage `json:"parameters"`
	} `json:"components"`
}

// readOpenAPI reads docs/openapi.json.
func readOpenAPI(t *testing.T) (openAPI, []byte) {
	t.Helper()
	data, err := os.ReadFile("../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	return doc, data
}

// The OpenAPI document describes every endpoint the server serves, and
// only those.
func TestOpenAPIRoutes(t *testing.T) {
	doc, _ := readOpenAPI(t)
	srv, err := server.New(stores.Open(t, stores.SQLite, kindsSchema, stores.Options{}), server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	served := srv.Routes()
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("the server serves %s, which docs/openapi.json does not describe", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("docs/openapi.json describes %s, which the server does not serve", r)
		}
	}
}

// The document's error codes and statuses are wire's, and each status's
// response lists exactly the codes answered with it; every operation's
// error statuses are such a response, and every reference resolves.
func TestOpenAPICodes(t *testing.T) {
	doc, data := readOpenAPI(t)
	byStatus := map[string][]string{}
	var all []string
	for _, c := range wire.Codes() {
		key := fmt.Sprintf("Error%d", c.Status)
		byStatus[key] = append(byStatus[key], c.Code)
		all = append(all, c.Code)
	}

	var codeEnum struct {
		Enum []string `json:"enum"`
	}
	if err := json.Unmarshal(doc.Components.Schemas["ErrorCode"], &codeEnum); err != nil {
		t.Fatal(err)
	}
	if !sameCodes(codeEnum.Enum, all) {
		t.Errorf("schema ErrorCode lists %v, wire.Codes has %v", codeEnum.Enum, all)
	}
	if got, want := slices.Sorted(maps.Keys(doc.Components.Responses)), slices.Sorted(maps.Keys(byStatus)); !slices.Equal(got, want) {
		t.Errorf("error responses %v, want one per status of wire.Codes: %v", got, want)
	}
	for key, resp := range doc.Components.Responses {
		if !sameCodes(resp.Codes, byStatus[key]) {
			t.Errorf("response %s lists codes %v, wire.Codes answers %v with its status", key, resp.Codes, byStatus[key])
		}
		s := resp.Content["application/json"].Schema
		if len(s.AllOf) != 2 || !sameCodes(s.AllOf[1].Properties.Error.Properties.Code.Enum, byStatus[key]) {
			t.Errorf("response %s: its schema's code enum is not %v", key, byStatus[key])
		}
	}

	used := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			var op struct {
				Responses map[string]struct {
					Ref string `json:"$ref"`
				} `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			for status, r := range op.Responses {
				if strings.HasPrefix(status, "2") {
					continue
				}
				want := "#/components/responses/Error" + status
				if r.Ref != want {
					t.Errorf("%s %s: response %s is %q, want %q (a status of wire.Codes)", method, path, status, r.Ref, want)
				}
				used["Error"+status] = true
			}
		}
	}
	for key := range byStatus {
		if !used[key] {
			t.Errorf("no operation lists %s", key)
		}
	}

	for _, m := range refsOf(data) {
		parts := strings.Split(strings.TrimPrefix(m, "#/components/"), "/")
		var ok bool
		switch parts[0] {
		case "schemas":
			_, ok = doc.Components.Schemas[parts[1]]
		case "responses":
			_, ok = doc.Components.Responses[parts[1]]
		case "parameters":
			_, ok = doc.Components.Parameters[parts[1]]
		}
		if !ok {
			t.Errorf("reference %s does not resolve", m)
		}
	}
}

// refsOf returns every "$ref" of the document.
func refsOf(data []byte) []string {
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["$ref"].(string); ok {
				refs = append(refs, r)
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	var v any
	json.Unmarshal(data, &v)
	walk(v)
	return refs
}

// sameCodes reports whether a and b hold the same strings.
func sameCodes(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
