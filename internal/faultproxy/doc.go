// Package faultproxy is an HTTP proxy on loopback that injects network and
// server faults between sync clients and a tether server, for tests: lost
// requests and answers, duplicated requests, delays, error statuses,
// connections reset or answers cut in the middle of a body. Each fault has
// its own rate; decisions come from a seeded generator.
package faultproxy
