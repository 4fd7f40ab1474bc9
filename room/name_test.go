package room_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rivo/uniseg"
	"golang.org/x/text/unicode/norm"

	"lepeerchat/room"
)

// Some user-perceived characters made of several code points.
const (
	family       = "👨\u200d👩\u200d👧\u200d👦"                                        // ZWJ sequence, 7 code points
	flagFR       = "🇫🇷"                                                            // regional-indicator pair
	thumbsSkin   = "👍🏽"                                                            // emoji + skin-tone modifier
	flagScot     = "🏴\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F" // black flag + tag sequence
	qDotDot      = "q\u0323\u0307"                                                 // letter + two combining marks, no precomposed form
	womanTechie  = "👩🏽\u200d💻"                                                     // skin tone inside a ZWJ sequence
	rainbowFlag  = "🏳\ufe0f\u200d🌈"                                                // variation selector + ZWJ
	keycapSeven  = "7\ufe0f\u20e3"                                                 // keycap: digit + VS16 + enclosing mark
	hindiNamaste = "नमस्ते"                                                        // Devanagari with virama and vowel signs
	// One of the longest standard emoji: 11 code points, 41 bytes.
	familySkinTones = "🧑🏻\u200d🧑🏼\u200d🧒🏽\u200d🧒🏾"
)

func TestNormalizeNameAcceptsAnyScriptAndEmoji(t *testing.T) {
	for _, name := range []string{
		"Alice",
		"O'Brien-Smith Jr.",
		"Zoë",
		"مرحبا بالعالم", // Arabic
		"שלום",          // Hebrew
		"会议室",           // CJK
		"東京オフィス",        // Japanese
		"한국어 모임",        // Korean
		hindiNamaste,    // Devanagari
		"Привет, мир",   // Cyrillic
		"Σίσυφος",       // Greek
		"สวัสดี",        // Thai
		"🎉",
		family, flagFR, thumbsSkin, flagScot, womanTechie, rainbowFlag, keycapSeven,
		"Team " + womanTechie + " & " + flagFR,
		"a\u200db",    // an inner joiner is kept
		"\u0600١٢٣",   // ARABIC NUMBER SIGN has a glyph: it is not trimmed away
		"x" + qDotDot, // combining marks
	} {
		t.Run(name, func(t *testing.T) {
			got, err := room.NormalizeName(name)
			if err != nil {
				t.Fatalf("NormalizeName(%q) = %v, want accepted", name, err)
			}
			if got != name {
				t.Errorf("NormalizeName(%q) = %q, want it unchanged", name, got)
			}
		})
	}
}

func TestNormalizeNameTrimsAndComposes(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"surrounding spaces are trimmed", "  Alice  ", "Alice"},
		{"surrounding tabs and newlines are trimmed", "\t\nAlice\r\n", "Alice"},
		{"ideographic space is trimmed", "\u3000東京\u3000", "東京"},
		{"no-break space is trimmed", "\u00a0Bob\u00a0", "Bob"},
		{"surrounding zero-width characters are trimmed", "\u200b\ufeffAlice\u200d\u200c", "Alice"},
		{"surrounding fillers are trimmed", "\u3164Alice\u2800", "Alice"},
		{"inner spaces are kept", "Jean  Paul", "Jean  Paul"},
		{"a decomposed letter is composed (NFC)", "Zoe\u0308", "Zo\u00eb"},
		{"a decomposed Hangul syllable is composed", "\u1100\u1161", "\uac00"},
		{"combining marks are put in canonical order", "q\u0307\u0323", "q\u0323\u0307"}, // ccc 220 before 230
		{"a subdivision flag keeps its tag characters", " " + flagScot + " ", flagScot},
		{"an emoji sequence is kept whole", " " + family + "\n", family},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := room.NormalizeName(tc.in)
			if err != nil {
				t.Fatalf("NormalizeName(%q) = %v, want %q", tc.in, err, tc.want)
			}
			if got != tc.want {
				t.Errorf("NormalizeName(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestNormalizeNameCountsUserPerceivedCharacters(t *testing.T) {
	for _, tc := range []struct {
		unit string // one user-perceived character
		what string
	}{
		{"a", "ASCII letters"},
		{"é", "precomposed letters"},
		{"e\u0301", "letters with a combining accent (composed by NFC)"},
		{qDotDot, "combining sequences without a precomposed form"},
		{"कि", "Devanagari syllables with a vowel sign"},
		{"字", "CJK ideographs"},
		{"🎉", "single emoji"},
		{family, "ZWJ family emoji"},
		{flagFR, "flags"},
		{flagScot, "subdivision flags"},
		{thumbsSkin, "emoji with a skin tone"},
		{familySkinTones, "the longest standard emoji"},
		{womanTechie, "ZWJ sequences with a skin tone"},
		{keycapSeven, "keycaps"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			at := strings.Repeat(tc.unit, room.MaxNameLen)
			if n := uniseg.GraphemeClusterCount(at); n != room.MaxNameLen {
				t.Fatalf("test data: %q is %d graphemes, want %d", at, n, room.MaxNameLen)
			}
			got, err := room.NormalizeName(at)
			if err != nil {
				t.Fatalf("%d %s refused: %v", room.MaxNameLen, tc.what, err)
			}
			if n := uniseg.GraphemeClusterCount(got); n != room.MaxNameLen {
				t.Errorf("%d %s normalised to %d characters", room.MaxNameLen, tc.what, n)
			}
			_, err = room.NormalizeName(at + tc.unit)
			wantCode(t, err, room.CodeInvalidName)
		})
	}
}

func TestNormalizeNameDoesNotCountTrimmedSpace(t *testing.T) {
	name := "   " + strings.Repeat("x", room.MaxNameLen) + "\n\u200b "
	got, err := room.NormalizeName(name)
	if err != nil {
		t.Fatalf("40 characters with surrounding blanks refused: %v", err)
	}
	if got != strings.Repeat("x", room.MaxNameLen) {
		t.Errorf("got %q", got)
	}
}

func TestNormalizeNameRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in string
	}{
		{"empty", ""},
		{"spaces only", "   "},
		{"white space only", " \t\n\r\u00a0\u3000"},
		{"zero-width space only", "\u200b"},
		{"zero-width joiners only", "\u200d\u200d"},
		{"byte order mark only", "\ufeff"},
		{"Hangul filler only", "\u3164"},
		{"Hangul choseong and jungseong fillers only", "\u115f\u1160"},
		{"halfwidth Hangul filler only", "\uffa0"},
		{"braille blank only", "\u2800\u2800"},
		{"a mix of invisible characters only", " \u200b \u3164 \u2800 \ufeff "},
		{"a lone combining mark", "\u0301"},
		{"a lone variation selector", "\ufe0f"},
		{"tag characters only", "\U000E0067\U000E0062"},
		{"soft hyphen only", "\u00ad"},
		{"newline inside", "a\nb"},
		{"tab inside", "a\tb"},
		{"carriage return inside", "a\rb"},
		{"NUL", "a\x00b"},
		{"NUL only", "\x00"},
		{"escape sequence", "\x1b[31mred"},
		{"DEL", "a\x7fb"},
		{"C1 control NEL inside", "a\u0085b"},
		{"C1 control CSI", "a\u009bb"},
		{"C1 control APC", "a\u009fb"},
		{"right-to-left override", "abc\u202edef"},
		{"left-to-right override", "\u202dabc"},
		{"right-to-left embedding", "abc\u202bdef"},
		{"pop directional formatting", "abc\u202c"},
		{"left-to-right isolate", "\u2066abc\u2069"},
		{"first strong isolate", "a\u2068b"},
		{"pop directional isolate", "abc\u2069"},
		{"right-to-left override at the end", "abc\u202e"},
		{"right-to-left isolate between blanks", " \u2067 abc"},
		{"invalid UTF-8 byte", "a\xffb"},
		{"invalid UTF-8 only", "\xff"},
		{"truncated UTF-8 sequence", "abc\xe2\x82"},
		{"overlong encoding", "\xc0\xafetc"},
		{"encoded surrogate", "a\xed\xa0\x80b"},
		{"replacement character", "a\ufffdb"},
		{"41 letters", strings.Repeat("a", room.MaxNameLen+1)},
		{"one letter carrying a megabyte of accents", "a" + strings.Repeat("\u0301", 1<<19)},
		{"two letters joined by a megabyte of joiners", "x" + strings.Repeat("\u200d", 1<<18) + "y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := room.NormalizeName(tc.in)
			wantCode(t, err, room.CodeInvalidName)
			if got != "" {
				t.Errorf("refused name normalised to %q, want empty", got)
			}
		})
	}
}

func TestNameKeyCollidesCaseInsensitivelyAfterNormalisation(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"Alice", "alice"},
		{"Alice", "ALICE"},
		{"Zoë", "ZOË"},
		{"Zoë", "zoe\u0308"},
		{"ZOË", "zoe\u0308"},
		{"Zo\u00eb", "  zoe\u0308 "},
		// cases.Fold is full Unicode case folding: ß folds to "ss".
		{"ß", "SS"},
		{"ß", "ss"},
		{"ẞ", "ss"},
		{"Straße", "STRASSE"},
		{"Σίσυφος", "ΣΊΣΥΦΟΣ"}, // final sigma folds like sigma
		{"Привет", "ПРИВЕТ"},
		{"ﬁsh", "FISH"}, // the ligature folds to its letters
	} {
		t.Run(tc.a+"~"+tc.b, func(t *testing.T) {
			ka, kb := key(t, tc.a), key(t, tc.b)
			if ka != kb {
				t.Errorf("NameKey(%q) = %q, NameKey(%q) = %q: want them equal", tc.a, ka, tc.b, kb)
			}
		})
	}
}

func TestNameKeyKeepsDistinctNamesDistinct(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"Zoe", "Zoë"},
		{"alice", "alicia"},
		{"a b", "ab"},
		{"东京", "京东"},
		{"ı", "i"}, // dotless i is its own letter
		{flagFR, "🇩🇪"},
		{thumbsSkin, "👍🏿"},
		{"Bob", "Bob2"},
		{"ss", "s"},
	} {
		t.Run(tc.a+"≠"+tc.b, func(t *testing.T) {
			ka, kb := key(t, tc.a), key(t, tc.b)
			if ka == kb {
				t.Errorf("NameKey(%q) = NameKey(%q) = %q: want them distinct", tc.a, tc.b, ka)
			}
		})
	}
}

func key(t *testing.T, name string) string {
	t.Helper()
	n, err := room.NormalizeName(name)
	if err != nil {
		t.Fatalf("NormalizeName(%q): %v", name, err)
	}
	return room.NameKey(n)
}

// FuzzNormalizeName checks that NormalizeName never panics and that every
// name it accepts is valid UTF-8, NFC, trimmed, 1 to 40 user-perceived
// characters long, and already in normal form.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{
		"", " ", "Alice", "  Zoe\u0308 ", "\u200b", "a\nb", "a\xffb", "\u202e",
		family, flagFR, flagScot, thumbsSkin, qDotDot, hindiNamaste, "\u0600١",
		strings.Repeat("a", 40), strings.Repeat(family, 41), " \u0301a", "\u3164x\u2800",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := room.NormalizeName(s)
		if err != nil {
			var e *room.Error
			if !errors.As(err, &e) || e.Code != room.CodeInvalidName {
				t.Fatalf("NormalizeName(%q) = %v, want invalid_name or success", s, err)
			}
			if got != "" {
				t.Fatalf("NormalizeName(%q) refused but returned %q", s, got)
			}
			return
		}
		if !utf8.ValidString(got) {
			t.Fatalf("NormalizeName(%q) = %q: invalid UTF-8", s, got)
		}
		if !norm.NFC.IsNormalString(got) {
			t.Fatalf("NormalizeName(%q) = %q: not NFC", s, got)
		}
		if strings.TrimSpace(got) != got {
			t.Fatalf("NormalizeName(%q) = %q: not trimmed", s, got)
		}
		if n := uniseg.GraphemeClusterCount(got); n < room.MinNameLen || n > room.MaxNameLen {
			t.Fatalf("NormalizeName(%q) = %q: %d characters", s, got, n)
		}
		if len(got) > room.MaxNameBytes {
			t.Fatalf("NormalizeName(%q) = %q: %d bytes", s, got, len(got))
		}
		again, err := room.NormalizeName(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeName(%q) = %q, but NormalizeName(%q) = %q, %v", s, got, got, again, err)
		}
		if room.NameKey(got) == "" {
			t.Fatalf("NameKey(%q) is empty", got)
		}
	})
}
