//go:build race

package store

// raceScale shrinks the contended race tests under the race detector, which
// slows every store operation about tenfold while their cost grows with the
// square of the writers: the exactness they check does not depend on size.
const raceScale = 4
