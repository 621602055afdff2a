package config

import (
	"maps"
	"slices"
	"strconv"
)

// suggest returns `; did you mean "x"?` for the known key closest to an
// unknown one, when one is close enough to be a typo, else "". Only the
// keys of the same mapping are candidates: a key that belongs elsewhere is
// a different mistake, and suggesting it would mislead.
func suggest(unknown string, known map[string]int) string {
	best, bestDist := "", 0
	for _, k := range slices.Sorted(maps.Keys(known)) {
		budget := typoBudget(k)
		if len(unknown) > len(k)+budget || len(k) > len(unknown)+budget {
			continue // too far apart in length alone
		}
		d := editDistance(unknown, k)
		if d > budget {
			continue
		}
		if best == "" || d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + strconv.Quote(best) + "?"
}

// typoBudget is how many edits still read as a typo of key: one for short
// keys, where two edits reach unrelated words ("otel" is not "otlp"), up
// to three for long ones.
func typoBudget(key string) int {
	return min(max(len(key)/3, 1), 3)
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// bytes ("agnet" is one edit from "agent") each count one. Keys are ASCII.
func editDistance(a, b string) int {
	// Three rows: the one before the previous is needed for transpositions.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
