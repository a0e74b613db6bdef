package xmpp

import (
	"encoding/xml"
	"errors"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// The byte-level checks of the stanza reader. They accept exactly what encoding/xml's
// strict decoder accepts (FuzzReaderOracle compares the two): names, quoted attribute
// values, the five predefined entities and character references, UTF-8 and the XML
// character range, "]]>" outside CDATA. Each function works on the bytes read so far and
// returns errNeedMore when they end before the construct does; the caller then reads more
// and parses the construct again from its start.

// errNeedMore: the input ends inside the construct being parsed.
var errNeedMore = errors.New("xmpp: need more input")

// errNoName: no name where one must be (the caller says which).
var errNoName = errors.New("xmpp: no name")

func syntaxErr(msg string) error { return &StreamError{Condition: "not-well-formed", Text: msg} }

const (
	cName      = 1 << iota // ASCII byte allowed in a name
	cNameStart             // ASCII byte allowed first in a name
	cSpace                 // XML white space
	cPlain                 // printable ASCII with no meaning in text or attribute values
)

var class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		switch {
		case 'A' <= b && b <= 'Z', 'a' <= b && b <= 'z', b == '_', b == ':':
			t[c] |= cName | cNameStart
		case '0' <= b && b <= '9', b == '.', b == '-':
			t[c] |= cName
		case b == ' ', b == '\t', b == '\n', b == '\r':
			t[c] |= cSpace
		}
		if (b >= 0x20 && b < 0x80 || b == '\t' || b == '\n') && b != '<' && b != '&' && b != '>' && b != '\'' && b != '"' {
			t[c] |= cPlain
		}
	}
	return t
}()

func skipSpace(b []byte, i int) int {
	for i < len(b) && class[b[i]]&cSpace != 0 {
		i++
	}
	return i
}

// scanName reads a name starting at b[i] as encoding/xml does: the name runs up to the
// first ASCII byte that cannot be in a name; it must then be an XML Name with at most one
// colon. It returns the index after the name.
func scanName(b []byte, i int) (int, error) {
	j, _, err := scanQName(b, i)
	return j, err
}

// scanQName is scanName that also reports whether the name has a colon.
func scanQName(b []byte, i int) (int, bool, error) {
	if i >= len(b) {
		return i, false, errNeedMore
	}
	c := b[i]
	if c < utf8.RuneSelf && class[c]&cName == 0 {
		return i, false, errNoName
	}
	ascii, colons := c < utf8.RuneSelf, 0
	if c == ':' {
		colons++
	}
	j := i + 1
	for ; j < len(b); j++ {
		c = b[j]
		if c >= utf8.RuneSelf {
			ascii = false
		} else if class[c]&cName == 0 {
			break
		} else if c == ':' {
			colons++
		}
	}
	if j >= len(b) {
		return j, false, errNeedMore
	}
	if ascii && class[b[i]]&cNameStart == 0 || !ascii && !isNameSlow(b[i:j]) {
		return j, false, syntaxErr("invalid XML name: " + string(b[i:j]))
	}
	if colons > 1 {
		return j, false, errNoName
	}
	return j, colons == 1, nil
}

// isNameSlow checks a name with non-ASCII letters. encoding/xml's tables of name
// characters (XML 1.0 Appendix B, all in the BMP) are not exported, so each rune is asked
// of encoding/xml once, as a processing instruction target, and the answer is kept in
// nameRunes. Names with a rune outside the tables fail, and end the stream.
func isNameSlow(name []byte) bool {
	for i := 0; i < len(name); {
		r, n := utf8.DecodeRune(name[i:])
		var ok bool
		switch {
		case r == utf8.RuneError && n == 1, r > 0xFFFF:
			ok = false
		case r < utf8.RuneSelf:
			ok = class[r]&cName != 0 && (i > 0 || class[r]&cNameStart != 0)
		default:
			first, later := nameRune(r)
			ok = first || i > 0 && later
		}
		if !ok {
			return false
		}
		i += n
	}
	return true
}

// nameRunes holds 4 bits per BMP rune: known, allowed first in a name, allowed later.
var nameRunes [1 << 16 / 8]atomic.Uint32

func nameRune(r rune) (first, later bool) {
	w, sh := &nameRunes[r>>3], uint(r&7)*4
	v := w.Load() >> sh & 0xF
	if v&1 == 0 {
		v = 1
		if isPITarget(string(r)) {
			v |= 2 | 4
		} else if isPITarget("a" + string(r)) {
			v |= 4
		}
		w.Or(v << sh)
	}
	return v&2 != 0, v&4 != 0
}

func isPITarget(name string) bool {
	tok, err := xml.NewDecoder(strings.NewReader("<?" + name + "?>")).RawToken()
	pi, ok := tok.(xml.ProcInst)
	return err == nil && ok && pi.Target == name
}

// splitName splits a qualified name as encoding/xml does.
func splitName(s string) (space, local string) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			if i == 0 || i == len(s)-1 {
				return "", s
			}
			return s[:i], s[i+1:]
		}
	}
	return "", s
}

func inCharRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// entity reads the reference at b[i] == '&' and returns the index after it and the
// character it stands for (a surrogate code point stands for U+FFFD, as in encoding/xml).
func entity(b []byte, i int) (int, rune, error) {
	i++
	if i >= len(b) {
		return i, 0, errNeedMore
	}
	if b[i] == '#' {
		i++
		if i >= len(b) {
			return i, 0, errNeedMore
		}
		base := rune(10)
		if b[i] == 'x' {
			base = 16
			i++
		}
		start := i
		var n rune
		over := false
		for ; i < len(b); i++ {
			c := b[i]
			var d rune
			switch {
			case '0' <= c && c <= '9':
				d = rune(c - '0')
			case base == 16 && 'a' <= c && c <= 'f':
				d = rune(c-'a') + 10
			case base == 16 && 'A' <= c && c <= 'F':
				d = rune(c-'A') + 10
			default:
				d = -1
			}
			if d < 0 {
				break
			}
			if !over {
				n = n*base + d
				over = n > unicode.MaxRune
			}
		}
		if i >= len(b) {
			return i, 0, errNeedMore
		}
		if b[i] != ';' || i == start || over {
			return i, 0, syntaxErr("invalid character entity")
		}
		if 0xD800 <= n && n <= 0xDFFF {
			n = utf8.RuneError
		}
		return i + 1, n, nil
	}
	j := i
	for j < len(b) && (b[j] >= utf8.RuneSelf || class[b[j]]&cName != 0) {
		j++
	}
	if j >= len(b) {
		return j, 0, errNeedMore
	}
	if b[j] == ';' {
		var r rune
		switch string(b[i:j]) {
		case "lt":
			r = '<'
		case "gt":
			r = '>'
		case "amp":
			r = '&'
		case "apos":
			r = '\''
		case "quot":
			r = '"'
		}
		if r != 0 {
			return j + 1, r, nil
		}
	}
	return j, 0, syntaxErr("invalid character entity")
}

// attrValue reads a quoted attribute value from b[i] (just after the opening quote q)
// and returns the index after the closing quote. With out != nil it appends the value as
// encoding/xml reports it (entities replaced, literal \r\n and \r turned into \n). With
// final set, b ends where the input does: a value cut short is still checked for bad
// UTF-8 (as encoding/xml does) before errNeedMore.
func attrValue(b []byte, i int, q byte, out *[]byte, final bool) (int, error) {
	bad := false
	for i < len(b) {
		c := b[i]
		if class[c]&cPlain != 0 {
			j := i + 1
			for j < len(b) && class[b[j]]&cPlain != 0 {
				j++
			}
			if out != nil {
				*out = append(*out, b[i:j]...)
			}
			i = j
			continue
		}
		switch {
		case c == q:
			if bad {
				return i, syntaxErr("invalid UTF-8 or character in attribute value")
			}
			return i + 1, nil
		case c == '<':
			return i, syntaxErr("unescaped < inside quoted string")
		case c == '&':
			j, r, err := entity(b, i)
			if err != nil {
				return j, err
			}
			if !inCharRange(r) {
				bad = true
			}
			if out != nil {
				*out = utf8.AppendRune(*out, r)
			}
			i = j
		case c == '\r':
			if out != nil {
				*out = append(*out, '\n')
			}
			i++
			if i < len(b) && b[i] == '\n' {
				i++
			}
		case c == '>', c == '\'', c == '"':
			if out != nil {
				*out = append(*out, c)
			}
			i++
		case c < utf8.RuneSelf: // control character
			bad = true
			if out != nil {
				*out = append(*out, c)
			}
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 || !inCharRange(r) {
				bad = true
			}
			if out != nil {
				*out = append(*out, b[i:i+n]...)
			}
			i += n
		}
	}
	if final && bad {
		return i, syntaxErr("invalid UTF-8 or character in attribute value")
	}
	return i, errNeedMore
}

// charData checks character data from b[i] up to the next '<' and returns its index.
// With final set, b ends where the input does and data running to the end is complete
// (returned with atEnd); otherwise that is errNeedMore.
func charData(b []byte, i int, final bool) (end int, atEnd bool, err error) {
	start, bad := i, false
	for i < len(b) {
		c := b[i]
		if class[c]&cPlain != 0 || c == '\r' || c == '\'' || c == '"' {
			i++
			continue
		}
		switch {
		case c == '<':
			if bad {
				return i, false, syntaxErr("invalid UTF-8 or character in text")
			}
			return i, false, nil
		case c == '>':
			if i-start >= 2 && b[i-1] == ']' && b[i-2] == ']' {
				return i, false, syntaxErr("unescaped ]]> not in CDATA section")
			}
			i++
		case c == '&':
			j, r, err := entity(b, i)
			if err != nil {
				return j, false, err
			}
			if !inCharRange(r) {
				bad = true
			}
			i = j
		case c < utf8.RuneSelf:
			bad = true
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 || !inCharRange(r) {
				bad = true
			}
			i += n
		}
	}
	if !final {
		return i, false, errNeedMore
	}
	if bad {
		return i, true, syntaxErr("invalid UTF-8 or character in text")
	}
	return i, true, nil
}

// checkText checks the content of a CDATA section.
func checkText(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 || !inCharRange(r) {
			return false
		}
		i += n
	}
	return true
}

// allSpace reports whether character data (already checked) is only white space once
// decoded, as bytes.TrimSpace sees it; with cdata, b is a CDATA section's content.
func allSpace(b []byte, cdata bool) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c == '&' && !cdata {
			j, r, _ := entity(b, i)
			if !unicode.IsSpace(r) {
				return false
			}
			i = j
			continue
		}
		if c < utf8.RuneSelf {
			if !unicode.IsSpace(rune(c)) {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if !unicode.IsSpace(r) {
			return false
		}
		i += n
	}
	return true
}
