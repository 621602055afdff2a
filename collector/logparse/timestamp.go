package logparse

import (
	"encoding/binary"
	"fmt"
	"time"
)

// fixedTSLen is the length of the timestamps Docker writes with
// timestamps=1: jsonmessage.RFC3339NanoFixed in UTC, e.g.
// "2026-11-23T10:06:33.117135967Z".
const fixedTSLen = 30

// maxTSLen bounds the search for the space that ends a timestamp prefix.
// The longest RFC3339Nano value time.Parse accepts with a 4-digit year is
// 35 bytes ("2006-01-02T15:04:05.999999999+07:00"); a little slack is kept.
const maxTSLen = 40

// ParseTimestamp parses b like time.Parse(time.RFC3339Nano, string(b)) and
// returns the same value, but without allocating and in a few nanoseconds
// for Docker's fixed form "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ". Anything else
// (fewer fraction digits, a numeric zone, an invalid value) goes through
// time.Parse, whose error is returned.
func ParseTimestamp(b []byte) (time.Time, error) {
	if t, ok := parseFixed(b); ok {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, fmt.Errorf("parsing log timestamp: %w", err)
	}
	return t, nil
}

// parseFixed handles exactly the 30-byte UTC form with 9 fraction digits.
// It accepts only what time.Parse accepts (ranges and day-of-month are
// checked), so that the fast path never changes the result; FuzzTimestamp
// holds it to that.
func parseFixed(b []byte) (time.Time, bool) {
	if len(b) != fixedTSLen || b[4] != '-' || b[7] != '-' || b[10] != 'T' ||
		b[13] != ':' || b[16] != ':' || b[19] != '.' || b[29] != 'Z' {
		return time.Time{}, false
	}
	y1, ok1 := digits2(b[0:2])
	y2, ok2 := digits2(b[2:4])
	month, ok3 := digits2(b[5:7])
	day, ok4 := digits2(b[8:10])
	hour, ok5 := digits2(b[11:13])
	minute, ok6 := digits2(b[14:16])
	sec, ok7 := digits2(b[17:19])
	nsec, ok8 := nanos(b[20:29])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8) {
		return time.Time{}, false
	}
	year := y1*100 + y2
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	days := daysFromCivil(year, month, day)
	unix := days*86400 + int64(hour*3600+minute*60+sec)
	// time.Unix(...).UTC() has the same representation as time.Parse's
	// result for a "Z" zone (no monotonic reading, UTC location), so the
	// two compare equal with ==.
	return time.Unix(unix, int64(nsec)).UTC(), true
}

// digits2 parses two decimal digits.
func digits2(b []byte) (int, bool) {
	_ = b[1]
	hi, lo := b[0]-'0', b[1]-'0'
	return int(hi)*10 + int(lo), hi <= 9 && lo <= 9
}

// nanos parses the 9 digits of a nanosecond fraction, the first 8 at once
// (SWAR): this runs for every line, even when the seconds are cached.
func nanos(b []byte) (int, bool) {
	_ = b[8]
	v := binary.LittleEndian.Uint64(b)
	// Every byte in '0'..'9': its high nibble is 3, and still 3 after
	// adding 6. A byte that carries into the next one fails itself.
	if (v&0xF0F0F0F0F0F0F0F0)|((v+0x0606060606060606)&0xF0F0F0F0F0F0F0F0)>>4 != 0x3333333333333333 {
		return 0, false
	}
	// Combine neighbouring digits, then pairs, then quads; the first
	// digit is in the lowest byte.
	v = (v & 0x0F0F0F0F0F0F0F0F) * (1 + 10<<8) >> 8
	v = (v & 0x00FF00FF00FF00FF) * (1 + 100<<16) >> 16
	v = (v & 0x0000FFFF0000FFFF) * (1 + 10000<<32) >> 32
	d := b[8] - '0'
	if d > 9 {
		return 0, false
	}
	return int(v)*10 + int(d), true
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if isLeap(year) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the number of days since 1970-01-01 of a proleptic
// Gregorian date (Howard Hinnant's days_from_civil), valid for years
// 0..9999. The year is shifted by one 400-year era so that the arithmetic
// is unsigned, which makes the divisions cheap.
func daysFromCivil(y, m, d int) int64 {
	const eraDays = 146097
	yy := uint(y + 400)
	var mp uint // months since March
	if m > 2 {
		mp = uint(m - 3)
	} else {
		mp = uint(m + 9)
		yy--
	}
	era := yy / 400
	yoe := yy - era*400
	doy := (153*mp+2)/5 + uint(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*eraDays+doe) - 719468 - eraDays
}
