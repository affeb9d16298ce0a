//go:build race
// +build race

package revledger

// raceEnabled: allocation counts are not meaningful under the race detector.
const raceEnabled = true
