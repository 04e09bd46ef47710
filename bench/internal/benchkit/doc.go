// Package benchkit holds what the benchmark programs under bench/ share:
// starting and stopping the servers they measure, running wrk and reading
// its report, describing the machine, and writing their sections of
// bench/RESULTS.md.
package benchkit
