//go:build race

package runner

// raceEnabled: the race detector slows the store (and so every 409 round of
// a contended counter, whose cost grows with the square of its writers) about
// tenfold.
const raceEnabled = true
