//go:build !race
// +build !race

package revledger

const raceEnabled = false
