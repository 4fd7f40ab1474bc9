package room_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"
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
		"x" + qDotDot,               // combining marks
		"q\u0300\u0301\u0302\u0303", // four marks on one letter, the most allowed
		"Nguyễn Thị Ánh",            // Vietnamese with stacked diacritics
		"Trần Quốc Toản",            // Vietnamese
		"क्\u200dष",                 // Devanagari: ZWJ after a virama asks for the half form
		"रवीन्द्रनाथ",               // Devanagari conjuncts
		"রবীন্দ্রনাথ",               // Bengali conjuncts
		"தமிழ்",                     // Tamil
		"ශ්\u200dරී ලංකා",           // Sinhala: ZWJ after al-lakuna makes the rakaaraansaya
		"می\u200cخواهم",             // Persian: ZWNJ between joining letters
		"ཀྲུང་གོ",                   // Tibetan stacks
		"ნინო",                      // Georgian
		"Արամ",                      // Armenian
		"አበበ",                       // Ethiopic
		"ᐃᓄᒃᑎᑐᑦ",                    // Canadian syllabics
		"Αλέξανδρος",                // Greek that is not a Latin look-alike
		"Дмитрий",                   // Cyrillic that is not a Latin look-alike
		"Жанна",                     // Cyrillic
		"李小龍", "さくら", "김민준",         // Chinese, Japanese, Korean personal names
		"l·l",                          // Catalan middle dot between two l
		"🏳\ufe0f\u200d⚧\ufe0f",         // transgender flag: two variation selectors
		"❤\ufe0f\u200d🔥",               // heart on fire
		"🧑\u200d🤝\u200d🧑",              // people holding hands
		"👁\ufe0f\u200d🗨\ufe0f",         // eye in speech bubble
		"🐦\u200d🔥",                     // phoenix (Unicode 15.1) is made of older emoji
		"🧑🏿\u200d🚀",                    // astronaut with a skin tone
		"👩\u200d❤\ufe0f\u200d💋\u200d👨", // kiss
		familySkinTones + " Smith",
		"🇯🇵🇰🇷🇧🇷",
		"🧑\u200d🦰", "🏃\u200d♀\ufe0f", "🧔🏻\u200d♂\ufe0f", // hair, gender signs
		"↔\ufe0f", "〰\ufe0f", // emoji that are a math symbol and punctuation
		"©\ufe0f", "☺\ufe0e", // emoji and text presentation
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
		{"a run of inner spaces becomes one space", "Jean  Paul", "Jean Paul"},
		{"an inner no-break space becomes a space", "Jean\u00a0Paul", "Jean Paul"},
		{"an inner ideographic space becomes a space", "東京\u3000オフィス", "東京 オフィス"},
		{"full-width letters become plain letters", "ｂｏｂ", "bob"},
		{"mathematical bold letters become plain letters", "𝐛𝐨𝐛", "bob"},
		{"mathematical fraktur letters become plain letters", "𝔭𝔞𝔶𝔭𝔞𝔩", "paypal"},
		{"a ligature becomes its letters", "ﬁsh", "fish"},
		{"half-width katakana become katakana", "ｶﾀｶﾅ", "カタカナ"},
		{"a Roman numeral becomes letters", "Ⅻ", "XII"},
		{"letter case is kept", "BoB McKay", "BoB McKay"},
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
			// As many of the unit as MaxNameBytes leaves room for, then
			// letters up to MaxNameLen characters, and room for one more
			// letter.
			units := min(room.MaxNameLen, (room.MaxNameBytes-room.MaxNameLen-1)/max(1, len(tc.unit)-1))
			at := strings.Repeat(tc.unit, units) + strings.Repeat("x", room.MaxNameLen-units)
			if n := uniseg.GraphemeClusterCount(at); n != room.MaxNameLen || len(at) > room.MaxNameBytes {
				t.Fatalf("test data: %q is %d graphemes and %d bytes, want %d graphemes", at, n, len(at), room.MaxNameLen)
			}
			got, err := room.NormalizeName(at)
			if err != nil {
				t.Fatalf("%d %s and %d letters refused: %v", units, tc.what, room.MaxNameLen-units, err)
			}
			if n := uniseg.GraphemeClusterCount(got); n != room.MaxNameLen {
				t.Errorf("%d %s and %d letters normalised to %d characters", units, tc.what, room.MaxNameLen-units, n)
			}
			_, err = room.NormalizeName(at + "x")
			wantRefusal(t, err, "a name may have at most 40 characters")
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

// The refusals NormalizeName gives, as docs/protocol.md §7.1 lists them.
const (
	msgInvisible = "a name must have at least one visible character"
	msgTooLong   = "a name may have at most 40 characters"
	msgTooBig    = "a name may take at most 256 bytes"
	msgUTF8      = "a name must be valid UTF-8"
	msgControl   = "a name may not contain control characters"
	msgBidi      = "a name may not contain bidirectional controls"
	msgReplace   = "a name may not contain replacement characters"
	msgPRECIS    = "a name may not contain invisible, unassigned or private-use characters, nor joiners or signs where its script does not use them"
	msgMarks     = "a name may have at most 4 marks on one character"
)

func TestNormalizeNameRefusesInvisibleAndLookAlikeTricks(t *testing.T) {
	zalgo := func(letters string, marks int) string {
		var b strings.Builder
		for _, l := range letters {
			b.WriteRune(l)
			for i := range marks {
				b.WriteRune(rune(0x300 + i%0x70)) // the combining diacritical marks
			}
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, in, why string
	}{
		{"inner zero-width space", "bo\u200bb", msgPRECIS},
		{"inner zero-width non-joiner between Latin letters", "bo\u200cb", msgPRECIS},
		{"inner zero-width joiner between Latin letters", "a\u200db", msgPRECIS},
		{"zero-width joiner after an emoji, before a letter", "👍\u200da", msgPRECIS},
		{"inner word joiner", "bo\u2060b", msgPRECIS},
		{"inner soft hyphen", "bo\u00adb", msgPRECIS},
		{"inner byte order mark", "bo\ufeffb", msgPRECIS},
		{"combining grapheme joiner", "bo\u034fb", msgPRECIS},
		{"Mongolian vowel separator", "bo\u180eb", msgPRECIS},
		{"inner Hangul filler", "bo\u3164b", msgPRECIS},
		{"inner half-width Hangul filler", "bo\uffa0b", msgPRECIS},
		{"interlinear annotation", "b\ufff9o\ufffab\ufffb!", msgPRECIS},
		{"variation selector after a letter", "bo\ufe0fb", msgPRECIS},
		{"variation selector after punctuation that is no emoji", "!\ufe0f", msgPRECIS},
		{"variation selector after a skin tone", "👍🏽\ufe0f", msgPRECIS},
		{"two variation selectors", "❤\ufe0f\ufe0f", msgPRECIS},
		{"malformed keycap", "7\ufe0f\ufe0f\u20e3", msgPRECIS},
		{"zero-width joiner between an emoji and punctuation", "👍\u200d!", msgPRECIS},
		{"variation selector on a compatibility emoji", "‼\ufe0f", msgPRECIS}, // NFKC makes ‼ "!!"
		{"two zero-width joiners between emoji", "👨\u200d\u200d👩", msgPRECIS},
		{"ideographic variation selector", "葛\U000E0100", msgPRECIS},
		{"tag characters after a letter", "bob\U000E0041\U000E007F", msgPRECIS},
		{"tag characters after an emoji other than the black flag", "👍\U000E0067\U000E0062\U000E007F", msgPRECIS},
		{"subdivision flag without its cancel tag", "🏴\U000E0067\U000E0062x", msgPRECIS},
		{"variation selector on a compatibility character", "™\ufe0f", msgPRECIS},
		{"Arabic number sign (a format character)", "\u0600١٢٣", msgPRECIS},
		{"middle dot between letters other than l", "a·b", msgPRECIS},
		{"private use character", "bob\ue000", msgPRECIS},
		{"supplementary private use character", "\U000F0000bob", msgPRECIS},
		{"unassigned code point", "bob\u0378", msgPRECIS},
		{"unassigned tag code point", "bob\U000E0080", msgPRECIS},
		{"noncharacter", "bob\ufdd0", msgPRECIS},
		{"last noncharacter", "bob\U0010FFFF", msgPRECIS},
		{"left-to-right mark", "bob\u200e", msgBidi},
		{"right-to-left mark", "\u200fbob", msgBidi},
		{"Arabic letter mark (U+061C)", "bo\u061cb", msgBidi},
		{"right-to-left override", "bob\u202e", msgBidi},
		{"object replacement character", "bob\ufffc", msgReplace},
		{"five marks on one letter", "q\u0300\u0301\u0302\u0303\u0304", msgMarks},
		{"short Zalgo text", zalgo("bob", 6), msgMarks},
		{"Zalgo of 620 code points", zalgo("zalgo", 123), msgTooBig},
		{"2 KB of combining marks", "a" + strings.Repeat("\u0301", 1024), msgTooBig},
		{"a letter and a run of virama-joiner pairs", "क" + strings.Repeat("\u094d\u200d", 3), msgMarks},
		{"only a lone mark left after trimming", " \u0301 ", msgInvisible},
		{"invalid UTF-8", "bob\xff", msgUTF8},
		{"a control character", "bob\x07", msgControl},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := room.NormalizeName(tc.in)
			wantRefusal(t, err, tc.why)
			if got != "" {
				t.Errorf("refused name normalised to %q, want empty", got)
			}
		})
	}
}

func TestNormalizeNameBoundsBytes(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"three of the longest emoji and a name", strings.Repeat(familySkinTones, 3) + " The Smith family of Leeds"},
		{"40 Hindi syllables", strings.Repeat(hindiNamaste, 10)},
		{"40 Thai syllables", strings.Repeat("สวัสดี", 10)},
		{"40 supplementary ideographs", strings.Repeat("𠮷", room.MaxNameLen)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := uniseg.GraphemeClusterCount(tc.in); n > room.MaxNameLen {
				t.Fatalf("test data: %d characters", n)
			}
			if got, err := room.NormalizeName(tc.in); err != nil || got != tc.in {
				t.Errorf("NormalizeName(%q) = %q, %v, want it unchanged", tc.in, got, err)
			}
		})
	}
	for _, tc := range []struct{ name, in string }{
		// Seven characters, 287 bytes.
		{"seven of the longest emoji", strings.Repeat(familySkinTones, 7)},
		{"40 of the longest emoji", strings.Repeat(familySkinTones, room.MaxNameLen)},
		// Before normalisation: NFC would compose these to 40 letters.
		{"a short name sent decomposed past the bound", strings.Repeat("e\u0301", room.MaxNameBytes/3+1)},
		{"a short name with trailing marks past the bound", "bob" + strings.Repeat("\u0301", room.MaxNameBytes/2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := room.NormalizeName(tc.in)
			wantRefusal(t, err, msgTooBig)
		})
	}
	// U+FDFA is one character of 3 bytes that NFKC makes 18 characters,
	// 33 bytes: the bound holds after normalisation too.
	_, err := room.NormalizeName(strings.Repeat("\ufdfa", 8))
	wantRefusal(t, err, msgTooBig)
}

func TestNameKeyCollidesLookAlikes(t *testing.T) {
	for _, group := range [][]string{
		{"bob", "BOB", "Bob", "bоb" /* Cyrillic о */, "bοb" /* Greek ο */, "ｂｏｂ", "𝐛𝐨𝐛", "𝒃𝒐𝒃", "ⓑⓞⓑ", "Bоb", "ВОВ" /* Cyrillic */, "ΒΟΒ" /* Greek */, "вов"},
		{"TOM", "ТОМ" /* Cyrillic */, "том", "tom"},
		{"Bill", "BiII" /* capital I */, "BILL", "bill", "Bi11"},
		{"All", "AlI", "Ali"}, // the price of the above: "AlI" looks like "All"
		{"Olga", "Olgа" /* Cyrillic а */, "OLGA"},
		{"paypal", "pаypаl", "𝔭𝔞𝔶𝔭𝔞𝔩", "PAYPAL"},
		{"Alice", "Аlice" /* Cyrillic А */, "ALICE"},
		{"modern", "rnodern"}, // r n looks like m
		{"Jean Paul", "Jean  Paul", "Jean\u00a0Paul", "jean paul"},
		{"ı", "i"}, // dotless i is confusable with i
		{"Straße", "STRASSE", "strasse"},
		{"fish", "ﬁsh"},
		{"7", "７", "𝟕"},
		{"❤\ufe0f", "❤"}, // an emoji with or without its variation selector
		{family, "👨👩👧👦"}, // a ZWJ sequence and the emoji it is made of
	} {
		for _, other := range group[1:] {
			t.Run(group[0]+"~"+other, func(t *testing.T) {
				ka, kb := key(t, group[0]), key(t, other)
				if ka != kb {
					t.Errorf("NameKey(%q) = %q, NameKey(%q) = %q: want them equal", group[0], ka, other, kb)
				}
			})
		}
	}
}

// A room stored before these rules holds names normalised the old way, which
// may contain what NormalizeName refuses now. Keys are computed from the
// stored names every time, so such a name must still get a key, and the same
// key as the look-alike a newcomer would pick.
func TestNameKeyOfNamesStoredUnderOlderRules(t *testing.T) {
	for _, tc := range []struct{ stored, newcomer string }{
		{"bo\u200bb", "bob"},
		{"a\u200db", "ab"},
		{"Jean  Paul", "Jean Paul"},
		{"bo\u3164b", "bob"},
		{"bob\ue000", "bob"},
		{"a·b", "ab"},
		{"bo\u00adb", "bob"},
		{"bo\u200bb" + family, "bob" + family},
		{"bob\ufffc" + flagScot, "bob" + flagScot},
		{"\uffa0bob", "bob"},
	} {
		t.Run(tc.stored, func(t *testing.T) {
			if k, n := room.NameKey(tc.stored), key(t, tc.newcomer); k != n {
				t.Errorf("NameKey(%q) = %q, want %q, the key of %q", tc.stored, k, n, tc.newcomer)
			}
		})
	}
}

// Every name the old rules accepted still has a key of its own, even when
// nothing of it is a character PRECIS allows where it stands.
func TestNameKeyIsNeverEmpty(t *testing.T) {
	for _, stored := range []string{
		"\u0600١٢٣", "\u00ad", "\ue000", "\u3164x", "a\u200d", "\u0301", "\ufffc",
		"a\u200b" + family, "\ufffc" + family, "a\uffa0" + family, "\u0600" + flagScot,
	} {
		if room.NameKey(stored) == "" {
			t.Errorf("NameKey(%q) is empty", stored)
		}
	}
}

func wantRefusal(t *testing.T, err error, msg string) {
	t.Helper()
	wantCode(t, err, room.CodeInvalidName)
	var e *room.Error
	if errors.As(err, &e) && e.Message != msg {
		t.Errorf("refused with %q, want %q", e.Message, msg)
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
		{flagFR, "🇩🇪"},
		{thumbsSkin, "👍🏿"},
		{"Bob", "Bob2"},
		{"ss", "s"},
		{"Иван", "Ivan"},
		{"Жанна", "Жанра"},
		{"Дмитрий", "Dmitriy"},
		{"Αλέξανδρος", "Alexandros"},
		{"さくら", "サクラ"}, // hiragana and katakana
		{"李小龍", "李小龙"}, // traditional and simplified
		{"김민준", "김민지"},
		{"مريم", "مريام"},
		{"שרה", "שרי"},
		{"नमस्ते", "नमस्कार"},
		{"Nguyễn", "Nguyên"},
		{"Ali", "Ala"},
		{"Emma", "Anna"},
		{family, familySkinTones},
		{womanTechie, "👩🏿\u200d💻"},
		{flagScot, "🏴\U000E0067\U000E0062\U000E0077\U000E006C\U000E0073\U000E007F"}, // Scotland and Wales
		{keycapSeven, "7"},
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

// FuzzNormalizeName checks that NormalizeName and NameKey never panic, and
// that every name NormalizeName accepts is valid UTF-8, NFC, trimmed, 1 to
// 40 user-perceived characters and at most MaxNameBytes long, free of
// controls and of runs of more than MaxMarksInARow marks, already in normal
// form, and has a non-empty, bounded key that its upper-case form shares.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{
		"", " ", "Alice", "  Zoe\u0308 ", "\u200b", "a\nb", "a\xffb", "\u202e",
		family, flagFR, flagScot, thumbsSkin, qDotDot, hindiNamaste, "\u0600١",
		strings.Repeat("a", 40), strings.Repeat(family, 41), " \u0301a", "\u3164x\u2800",
		"bо\u200bb", "ｂｏｂ", "𝐛𝐨𝐛", "a\u200eb", "a\u061cb", "क्\u200dष", "می\u200cخواهم",
		familySkinTones, womanTechie, rainbowFlag, keycapSeven, "Nguyễn Thị Ánh", "l·l",
		"z" + strings.Repeat("\u0301\u0302", 3), "\ufdfa", "¨x", "ΣΊΣΥΦΟΣ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s != "" && room.NameKey(s) == "" {
			t.Fatalf("NameKey(%q) is empty", s) // any stored string has a key
		}
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
		marks := 0
		for _, r := range got {
			if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
				t.Fatalf("NormalizeName(%q) = %q: holds %U", s, got, r)
			}
			if unicode.Is(unicode.M, r) {
				if marks++; marks > room.MaxMarksInARow {
					t.Fatalf("NormalizeName(%q) = %q: more than %d marks in a row", s, got, room.MaxMarksInARow)
				}
			} else if r != '\u200c' && r != '\u200d' {
				marks = 0
			}
		}
		k := room.NameKey(got)
		if k == "" || len(k) > 4*room.MaxNameBytes {
			t.Fatalf("NameKey(%q) = %q: %d bytes", got, k, len(k))
		}
		if again := room.NameKey(got); again != k {
			t.Fatalf("NameKey(%q) = %q, then %q", got, k, again)
		}
		if upper, err := room.NormalizeName(strings.ToUpper(got)); err == nil && room.NameKey(upper) != k {
			t.Fatalf("NameKey(%q) = %q, but NameKey(%q) = %q", got, k, upper, room.NameKey(upper))
		}
	})
}
