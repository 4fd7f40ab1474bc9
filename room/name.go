package room

import (
	"strings"
	"unicode"

	"github.com/rivo/uniseg"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Name length bounds, in user-perceived characters (grapheme clusters).
const (
	MinNameLen = 1
	MaxNameLen = 40
)

// MaxNameBytes bounds the UTF-8 size of a name. One user-perceived character
// may carry any number of combining marks or joiners, so MaxNameLen alone
// does not bound it; this leaves room for 40 of the longest standard emoji
// sequences (41 bytes, a family with four skin tones).
const MaxNameBytes = 2048

// NormalizeName returns the display form of a room name or username: NFC,
// trimmed of surrounding white space. It refuses names that are empty, longer
// than MaxNameLen characters or MaxNameBytes bytes, that contain control or
// bidirectional-override characters, or that hold nothing visible.
func NormalizeName(s string) (string, error) {
	s = strings.TrimFunc(norm.NFC.String(s), isTrimmable)
	n := uniseg.GraphemeClusterCount(s)
	switch {
	case n < MinNameLen:
		return "", refuse(CodeInvalidName, "a name must have at least one visible character")
	case n > MaxNameLen || len(s) > MaxNameBytes:
		return "", refuse(CodeInvalidName, "a name may have at most 40 characters")
	}
	visible := false
	for _, r := range s {
		if unicode.IsControl(r) || isBidiControl(r) || r == unicode.ReplacementChar {
			return "", refuse(CodeInvalidName, "a name may not contain control characters")
		}
		if !isBlank(r) && !unicode.Is(unicode.Mn, r) && !unicode.Is(unicode.Me, r) {
			visible = true
		}
	}
	if !visible {
		return "", refuse(CodeInvalidName, "a name must have at least one visible character")
	}
	return s, nil
}

// NameKey is the form in which two usernames are compared: case-folded and
// NFC-normalised, so that "Zoë", "ZOË" and "zoe\u0308" collide.
func NameKey(normalized string) string {
	return norm.NFC.String(cases.Fold().String(norm.NFC.String(normalized)))
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
	return isBlank(r) && !isTag(r) && !isBidiControl(r)
}

func isTag(r rune) bool { return r >= '\U000e0000' && r <= '\U000e007f' }

// isBidiControl reports the embedding, override and isolate controls that
// would let a name reorder the text around it.
func isBidiControl(r rune) bool {
	return (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}
