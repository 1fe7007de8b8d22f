// Package proctime reads the CPU time the process has used, user and
// system: on a machine shared with other work, a steadier measure of what
// a piece of code costs than the time that passed. tether-bench's cpu
// scenario and the benchmarks report it.
package proctime
