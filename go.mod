module github.com/tethersync/tether

go 1.26.8

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/go-resty/resty/v2 v2.17.2
	github.com/google/uuid v1.6.0
	github.com/mattn/go-sqlite3 v1.14.53
	golang.org/x/sync v0.24.0
)

require golang.org/x/net v0.43.0 // indirect
