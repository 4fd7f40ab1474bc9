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

// NormalizeName returns the display form of a room name or username: NFC,
// trimmed of surrounding white space. It refuses names that are empty, longer
// than MaxNameLen characters, that contain control or bidirectional-override
// characters, or that hold nothing visible.
func NormalizeName(s string) (string, error) {
	s = strings.TrimFunc(norm.NFC.String(s), isBlank)
	n := uniseg.GraphemeClusterCount(s)
	switch {
	case n < MinNameLen:
		return "", refuse(CodeInvalidName, "a name must have at least one visible character")
	case n > MaxNameLen:
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

// isBlank reports white space and the invisible format characters that
// render as nothing on their own (zero-width spaces and joiners, BOM, …).
func isBlank(r rune) bool {
	return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || r == '\u3164' || r == '\u115f' || r == '\u1160' || r == '\u2800'
}

// isBidiControl reports the embedding, override and isolate controls that
// would let a name reorder the text around it.
func isBidiControl(r rune) bool {
	return (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}
