package room

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"github.com/rivo/uniseg"
	"golang.org/x/text/cases"
	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

// Name length bounds, in user-perceived characters (grapheme clusters).
const (
	MinNameLen = 1
	MaxNameLen = 40
)

// MaxNameBytes bounds the UTF-8 size of a name, before and after
// normalisation: one user-perceived character may carry any number of
// combining marks or joiners, so MaxNameLen alone does not bound it.
//
// 256 bytes hold every realistic name of up to 40 characters: 40 characters
// of any script at four bytes each (160), 40 syllables of Hindi or Thai
// (about 4.5 bytes each, 180), or a family name with three of the longest
// standard emoji (a family with four skin tones is 41 bytes) and 100 bytes
// of text. They do not hold 40 of those emoji (1640 bytes), which no one
// needs as a name and which would let each name cost six times as much to
// store and to send to every member.
const MaxNameBytes = 256

// MaxMarksInARow bounds a run of combining marks (and joiners) after one
// character, which is how "Zalgo" text stacks hundreds of marks into one
// character and draws over the lines around it. Real writing stays well
// under it: Vietnamese composes to one letter with at most one more mark,
// Thai puts a vowel and a tone mark on a consonant (2), Devanagari a nukta,
// virama or vowel sign and a nasal sign (at most 3), pointed Hebrew a
// dagesh, a vowel and a cantillation mark (3), and emoji a variation
// selector with a keycap or a joiner (2).
const MaxMarksInARow = 4

// NormalizeName returns the display form of a room name or username, or
// refuses it. The rules are those of docs/protocol.md §7.1:
//
//   - white space and invisible characters are trimmed from both ends;
//   - the rest is enforced by the PRECIS Nickname profile (RFC 8266):
//     spaces are mapped to U+0020 and runs of them to one, the text is
//     normalised to NFKC (full-width and mathematical letters become plain
//     letters, letter case is kept), and control, default-ignorable,
//     private-use and unassigned code points (against PRECIS's Unicode
//     version, precis.UnicodeVersion) are refused, as are joiners and signs
//     outside the contexts their scripts use them in (RFC 5892 CONTEXTJ and
//     CONTEXTO); emoji sequences keep the joiners, variation selectors and
//     tags they are made of (see hideEmoji);
//   - bidirectional controls, including U+200E, U+200F and U+061C, and the
//     replacement characters U+FFFC and U+FFFD are refused;
//   - the result must have 1 to MaxNameLen user-perceived characters, at
//     most MaxNameBytes bytes, at most MaxMarksInARow marks in a row, and
//     something visible.
func NormalizeName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", refuse(CodeInvalidName, "a name must be valid UTF-8")
	}
	s = strings.TrimFunc(s, isTrimmable)
	if len(s) > MaxNameBytes {
		return "", errNameBytes
	}
	s = norm.NFC.String(s)
	if s == "" {
		return "", errNameInvisible
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return "", refuse(CodeInvalidName, "a name may not contain control characters")
		case unicode.Is(unicode.Bidi_Control, r):
			return "", refuse(CodeInvalidName, "a name may not contain bidirectional controls")
		case r == unicode.ReplacementChar || r == placeholder:
			return "", refuse(CodeInvalidName, "a name may not contain replacement characters")
		}
	}
	hidden, seqs := hideEmoji(s)
	enforced, err := precis.Nickname.String(hidden)
	if err != nil {
		return "", errNamePRECIS
	}
	s, ok := showEmoji(enforced, seqs, func(seq string) string { return seq })
	if !ok {
		return "", errNamePRECIS
	}
	switch n := uniseg.GraphemeClusterCount(s); {
	case n < MinNameLen:
		return "", errNameInvisible
	case len(s) > MaxNameBytes:
		return "", errNameBytes
	case n > MaxNameLen:
		return "", refuse(CodeInvalidName, "a name may have at most 40 characters")
	case marksInARow(s) > MaxMarksInARow:
		return "", refuse(CodeInvalidName, "a name may have at most 4 marks on one character")
	case !strings.ContainsFunc(s, isVisible):
		return "", errNameInvisible
	}
	return s, nil
}

var (
	errNameBytes     = refuse(CodeInvalidName, "a name may take at most 256 bytes")
	errNameInvisible = refuse(CodeInvalidName, "a name must have at least one visible character")
	errNamePRECIS    = refuse(CodeInvalidName, "a name may not contain invisible, unassigned or private-use characters, nor joiners or signs where its script does not use them")
)

// NameKey is the form in which two usernames are compared: the PRECIS
// Nickname comparison form (case-insensitive, NFKC), with the letters whose
// capitals look like Latin capitals taken as those (see capitalLookAlikes),
// case-folded in full (ß and ss collide), reduced to its confusable skeleton
// (Unicode TS #39, with the data of Unicode 13.0.0 in
// github.com/mtibben/confusables). So "bob", "BOB", "bоb" (Cyrillic о),
// "ВОВ" (Cyrillic), "ｂｏｂ" and "𝐛𝐨𝐛" all have one key, and so have
// "Bill" and "BiII" (capital I). In emoji sequences, joiners and variation
// selectors are left out of the key: a sequence a device cannot draw as one
// picture shows as its parts.
//
// The key is computed from the stored name each time, never stored. A name
// stored under the rules before PRECIS may hold characters PRECIS refuses;
// its key is that of the characters PRECIS allows, so it still collides
// with the look-alike names that are accepted now. NameKey gives every
// string a key, whatever it holds.
func NameKey(normalized string) string {
	key, ok := precisKey(normalized)
	if !ok {
		// Nothing of it is a character PRECIS allows: compare the stored
		// string itself.
		key = norm.NFKC.String(normalized)
	}
	return confusables.Skeleton(cases.Fold().String(capitalLookAlikes(key)))
}

// precisKey returns the Nickname comparison form of name with its glued
// emoji sequences as emojiKey makes them, leaving out what PRECIS refuses
// when it holds any. It reports false when nothing is left to compare.
func precisKey(name string) (string, bool) {
	hidden, seqs := hideEmoji(strings.ReplaceAll(name, string(placeholder), ""))
	key, err := precis.Nickname.CompareKey(hidden)
	if err != nil {
		allowed := precis.Nickname.Allowed()
		key, err = precis.Nickname.CompareKey(strings.Map(func(r rune) rune {
			if r == placeholder || allowed.Contains(r) {
				return r
			}
			return -1
		}, hidden))
		if err != nil {
			return "", false
		}
	}
	return showEmoji(key, seqs, emojiKey)
}

// capitalLookAlikes replaces each letter of the lower-case string s whose
// capital is confusable with one Latin letter by that letter, in lower case.
//
// The skeleton of a lower-case string misses the look-alikes that only the
// capitals share: Cyrillic "т" does not look like "t", but "Т" looks like
// "T"; "i" does not look like "l", but "I" does. Taking the skeleton before
// folding case would break case-insensitivity instead ("ΣΊΣΥΦΟΣ" and
// "Σίσυφος" have different skeletons: capital iota looks like "l", small
// iota like "i"). So the key holds, for each such letter in either case, the
// Latin letter its capital looks like: "ТОМ", "том" and "TOM" collide, and
// "BiII", "Bill" and "bill". The price is that a few names that differ only
// in such a letter in lower case collide too ("Ali" and "All").
func capitalLookAlikes(s string) string {
	like := capitalLike()
	return strings.Map(func(r rune) rune {
		if l, ok := like[r]; ok {
			return l
		}
		return r
	}, norm.NFD.String(s))
}

// capitalLike maps each character whose capital is confusable with one
// Latin letter to that letter in lower case. It is built once, from the
// confusables data, on first use; every character that has a capital lies
// below U+20000.
var capitalLike = sync.OnceValue(func() map[rune]rune {
	like := make(map[rune]rune)
	for r := rune(0); r < 0x20000; r++ {
		upper := unicode.ToUpper(r)
		if upper == r {
			continue
		}
		sk := confusables.Skeleton(string(upper))
		if len(sk) == 1 && sk != string(upper) && unicode.In(rune(sk[0]), unicode.Latin) {
			like[r] = unicode.ToLower(rune(sk[0]))
		}
	}
	return like
})

// emojiKey is an emoji sequence as NameKey compares it.
func emojiKey(seq string) string {
	return strings.Map(func(r rune) rune {
		if r == zwj || r == vs15 || r == vs16 {
			return -1
		}
		return r
	}, seq)
}

// marksInARow returns the length of the longest run of combining marks and
// joiners in s.
func marksInARow(s string) int {
	longest, run := 0, 0
	for _, r := range s {
		if unicode.Is(unicode.M, r) || r == zwj || r == zwnj {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}

// isVisible reports the characters that draw something on their own.
func isVisible(r rune) bool {
	return !isBlank(r) && !unicode.Is(unicode.Mn, r) && !unicode.Is(unicode.Me, r)
}

// isBlank reports white space, the invisible format characters that render
// as nothing on their own (zero-width spaces and joiners, BOM, …) and the
// fillers that fonts draw as blank (Hangul fillers, braille blank).
//
// The prepended concatenation marks (U+0600 ARABIC NUMBER SIGN, …) are
// format characters too but have a glyph of their own, so they are not blank.
func isBlank(r rune) bool {
	switch r {
	case '\u115f', '\u1160', '\u3164', '\uffa0', '\u2800':
		return true
	}
	return unicode.IsSpace(r) ||
		unicode.Is(unicode.Cf, r) && !unicode.Is(unicode.Prepended_Concatenation_Mark, r)
}

// isTrimmable reports the blank characters that may be cut from the ends of
// a name. Tag characters (U+E0020–U+E007F) are blank but end the subdivision
// flags (🏴 + tags, as in the flag of Scotland): cutting them would turn the
// flag into a plain black flag. Bidirectional controls are refused wherever
// they are, not silently cut.
func isTrimmable(r rune) bool {
	return isBlank(r) && !isTag(r) && !unicode.Is(unicode.Bidi_Control, r)
}
