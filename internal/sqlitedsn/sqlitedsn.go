package sqlitedsn

import "net/url"

// DSN returns the go-sqlite3 data source name "file:PATH?k1=v1&k2=v2..."
// for the database file at path, with params (driver options such as
// "_journal_mode" or "_busy_timeout") sorted by key and their values
// query-escaped. The path is used as given. With no params it returns
// "file:PATH".
func DSN(path string, params map[string]string) string {
	q := make(url.Values, len(params))
	for k, v := range params {
		q.Set(k, v)
	}
	return Query(path, q)
}

// Query is DSN with parameters that may repeat (ncruces' "_pragma"): keys
// sorted, the values of one key in their order.
func Query(path string, q url.Values) string {
	if len(q) == 0 {
		return "file:" + path
	}
	return "file:" + path + "?" + q.Encode() // Encode sorts by key
}
