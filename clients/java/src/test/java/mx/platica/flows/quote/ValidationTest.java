package mx.platica.flows.quote;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The email and postal-code rules, exactly as the reference (bridge/src/quote.rs). */
class ValidationTest {

  @ParameterizedTest
  @ValueSource(
      strings = {
        "juan@empresa.com",
        "a@b.c",
        "a.b+c@sub.example.mx",
        "a@b@c.com", // split at the first @: domain "b@c.com"
        "ñ@dominio.mx",
        "juan\uFEFF@empresa.com", // U+FEFF is not White_Space
        "juan\u200B@empresa.com", // nor is U+200B
        "juan\u001F@empresa.com" // Java's isWhitespace says yes; Unicode White_Space says no
      })
  void validEmails(String email) {
    assertTrue(QuoteFlow.validEmail(email), email);
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "",
        "juan",
        "juan@",
        "@empresa.com",
        "juan@empresa",
        "juan@empresa.",
        "juan@.com",
        "juan@empresa..com",
        "juan @empresa.com",
        "juan@empresa.com ",
        "juan\t@empresa.com",
        "juan\u00A0@empresa.com", // no-break space is White_Space (not Java's isWhitespace)
        "juan\u2007@empresa.com", // figure space, likewise
        "juan\u202F@empresa.com", // narrow no-break space, likewise
        "juan\u0085@empresa.com",
        "juan\u3000@empresa.com"
      })
  void invalidEmails(String email) {
    assertFalse(QuoteFlow.validEmail(email), email);
  }

  @Test
  void whiteSpaceIsExactlyUnicodeWhiteSpace() {
    int[] whiteSpace = {
      0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
      0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000
    };
    java.util.Set<Integer> expected = new java.util.HashSet<>();
    for (int c : whiteSpace) {
      expected.add(c);
    }
    for (int c = 0; c <= Character.MAX_CODE_POINT; c++) {
      boolean want = expected.contains(c);
      if (QuoteFlow.isWhiteSpace(c) != want) {
        throw new AssertionError(String.format("U+%04X: expected %s", c, want));
      }
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"06600", "00000", "99999"})
  void validPostalCodes(String code) {
    assertTrue(QuoteFlow.validPostalCode(code), code);
  }

  @ParameterizedTest
  @ValueSource(
      strings = {"", "0660", "066000", "06G00", " 6600", "6600 ", "０６６００", "٠٦٦٠٠", "0660\u0000"})
  void invalidPostalCodes(String code) {
    assertFalse(QuoteFlow.validPostalCode(code), code);
  }
}
