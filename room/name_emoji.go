package room

import (
	"strings"

	"github.com/rivo/uniseg"
	"golang.org/x/text/secure/precis"
)

// PRECIS (RFC 8264) refuses every default-ignorable code point and allows
// the zero-width joiner only after a virama (RFC 5892, CONTEXTJ). Emoji
// sequences need three kinds of them, the glue of an emoji sequence
// (Unicode TS #51):
//
//   - U+200D ZERO WIDTH JOINER between the emoji of a ZWJ sequence
//     (👨‍👩‍👧‍👦, 👩🏽‍💻, 🏳️‍🌈);
//   - U+FE0E / U+FE0F, the text and emoji variation selectors (❤️, 7️⃣);
//   - the tag characters U+E0020–U+E007F after 🏴 of a subdivision flag
//     (the flag of Scotland).
//
// So the names code hands PRECIS each well-formed emoji sequence that holds
// glue as one placeholder character, and puts the sequence back afterwards:
// every other character of a name, including a joiner that is not inside
// such a sequence, goes through PRECIS as it is.
const (
	zwj       = '\u200d'
	zwnj      = '\u200c'
	vs15      = '\ufe0e'
	vs16      = '\ufe0f'
	keycap    = '\u20e3'
	blackFlag = '\U0001f3f4'
	cancelTag = '\U000e007f'

	// placeholder stands for one emoji sequence while PRECIS runs: a
	// symbol PRECIS allows and that no mapping or normalisation changes,
	// adds or removes. Names may not contain it themselves (it draws as a
	// box standing for a missing object), so every placeholder in PRECIS's
	// output is one put there by hideEmoji.
	placeholder = '\ufffc'
)

// isEmojiGlue reports the code points that emoji sequences need and that
// PRECIS refuses on their own.
func isEmojiGlue(r rune) bool {
	return r == zwj || r == vs15 || r == vs16 || isTag(r)
}

func isTag(r rune) bool { return r >= '\U000e0000' && r <= '\U000e007f' }

// isSkinTone reports the emoji modifiers U+1F3FB–U+1F3FF.
func isSkinTone(r rune) bool { return r >= '\U0001f3fb' && r <= '\U0001f3ff' }

// isEmojiBase reports the Extended_Pictographic characters, which emoji
// sequences are built of (most are "other symbols", but ‼️, ↔️ and 〰️ are
// punctuation and math symbols). Go's unicode package lacks the property and
// uniseg keeps its table to itself, so this asks uniseg's grapheme rules
// (UAX #29): after an emoji and a ZWJ, only an Extended_Pictographic
// character stays in the same cluster (GB11), apart from the characters
// that extend any cluster (GB9).
func isEmojiBase(r rune) bool {
	c := string(r)
	return uniseg.GraphemeClusterCount("\U0001f600\u200d"+c) == 1 && uniseg.GraphemeClusterCount("a"+c) == 2
}

// isGluedEmoji reports whether the grapheme cluster g is a well-formed emoji
// sequence that holds glue and whose other characters PRECIS takes as they
// are (so ™️ is not one: NFKC makes its ™ "TM").
func isGluedEmoji(g string) bool {
	if !strings.ContainsFunc(g, isEmojiGlue) || !isEmojiSequence([]rune(g)) {
		return false
	}
	bases := strings.Map(func(r rune) rune {
		if isEmojiGlue(r) {
			return -1
		}
		return r
	}, g)
	enforced, err := precis.Nickname.String(bases)
	return err == nil && enforced == bases
}

// isEmojiSequence reports whether rs is a keycap (digit, # or * + U+FE0F +
// U+20E3), a subdivision flag (🏴 + tags + cancel tag), or emoji, each
// optionally followed by a variation selector or a skin tone, joined by
// ZWJ.
func isEmojiSequence(rs []rune) bool {
	switch first := rs[0]; {
	case strings.ContainsRune("0123456789#*", first):
		return len(rs) == 3 && rs[1] == vs16 && rs[2] == keycap
	case first == blackFlag && len(rs) > 2 && isTag(rs[1]):
		for _, r := range rs[1 : len(rs)-1] {
			if !isTag(r) || r == cancelTag {
				return false
			}
		}
		return rs[len(rs)-1] == cancelTag
	}
	for i, r := range rs {
		var prev rune
		if i > 0 {
			prev = rs[i-1]
		}
		switch {
		case r == vs15 || r == vs16 || isSkinTone(r):
			if i == 0 || !isEmojiBase(prev) {
				return false
			}
		case r == zwj:
			if i == 0 || i == len(rs)-1 || !isEmojiBase(rs[i+1]) ||
				!(isEmojiBase(prev) || prev == vs16 || isSkinTone(prev)) {
				return false
			}
		case !isEmojiBase(r):
			return false
		}
	}
	return true
}

// hideEmoji replaces each glued emoji sequence of s by placeholder and
// returns them in order.
func hideEmoji(s string) (string, []string) {
	var b strings.Builder
	var seqs []string
	state := -1
	for rest := s; rest != ""; {
		var g string
		g, rest, _, state = uniseg.FirstGraphemeClusterInString(rest, state)
		if isGluedEmoji(g) {
			seqs = append(seqs, g)
			b.WriteRune(placeholder)
		} else {
			b.WriteString(g)
		}
	}
	return b.String(), seqs
}

// showEmoji puts back the sequences hideEmoji took out of s, in order, each
// as form makes it. It reports false when s does not hold exactly one
// placeholder per sequence.
func showEmoji(s string, seqs []string, form func(string) string) (string, bool) {
	if strings.Count(s, string(placeholder)) != len(seqs) {
		return "", false
	}
	var b strings.Builder
	for _, seq := range seqs {
		before, after, _ := strings.Cut(s, string(placeholder))
		b.WriteString(before)
		b.WriteString(form(seq))
		s = after
	}
	b.WriteString(s)
	return b.String(), true
}
