"""A small, safe expression language for rule conditions.

Source text is tokenized and parsed by hand (a Pratt parser) into a tree of
small node objects, which is then turned into nested closures. Nothing is ever
handed to Python's ``eval``, ``exec`` or ``compile``: the only things an
expression can do are read fields from the mapping it is evaluated against,
compare, do arithmetic and call ``abs``, ``min`` or ``max``.

The language, loosest binding first::

    or    and    not    == != < <= > >= in (...) not in (...)    + -    * /    unary -
    atoms: 12  1.5e3  'text' "text"  true false null  field_name  (expr)
           abs(x)  min(a, b, ...)  max(a, b, ...)

Comparisons chain as in Python (``100 <= amount < 500``); ``and``/``or``
short-circuit and give true or false.

Evaluation never raises. A missing field is ``null``; a comparison involving
``null`` (or values of types that cannot be ordered) is false, even ``!=``, so
a rule never fires on missing data by accident. Logic is two-valued, though:
``not (x > 1)`` is true when ``x`` is missing. Presence is tested explicitly
with ``x == null`` or ``x != null``. Arithmetic on anything but numbers
(booleans and strings included) is ``null``, and so is division by zero.

>>> expr = compile_expression('amount > 220 and channel in ("ecom", "moto")')
>>> expr.evaluate({"amount": 250.0, "channel": "ecom"})
True
>>> expr.matches({"channel": "ecom"})  # amount missing: the comparison is false
False
>>> compile_expression("amount / n").evaluate({"amount": 1, "n": 0}) is None
True
>>> try:
...     compile_expression("amount > 5)")
... except RuleError as exc:
...     print(exc)
unexpected ')' at column 11; there is no '(' to close
"""

from __future__ import annotations

import difflib
import keyword
import numbers
import operator
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

__all__ = [
    "FUNCTIONS",
    "MAX_EXPRESSION_LENGTH",
    "MAX_NESTING",
    "Expression",
    "RuleError",
    "compile_expression",
]

#: Longer sources are refused before they are tokenized.
MAX_EXPRESSION_LENGTH = 2000
#: How deeply expressions may nest: each parenthesis, function call, ``in`` list,
#: unary operator, and operand that is itself an operation of higher precedence
#: (``a or b and c`` is two levels) counts. Left-associative chains such as
#: ``a + b + c`` or ``a and b and c`` are one level however long they are.
#: Kept small because the parser, the compiler and the evaluator all recurse.
MAX_NESTING = 50

Fn = Callable[[Mapping[str, Any]], Any]


class RuleError(ValueError):
    """A rule or an expression cannot be used; the message says why and where."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


# --- values ----------------------------------------------------------------


def _is_number(x: Any) -> bool:
    # Exact types first: the common case must stay cheap. bool is deliberately
    # not a number, so `true + 1` is null rather than 2.
    t = type(x)
    if t is int or t is float:
        return True
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _abs(x: Any) -> Any:
    return abs(x) if _is_number(x) else None


def _min(*xs: Any) -> Any:
    for x in xs:
        if not _is_number(x):
            return None
    return min(xs)


def _max(*xs: Any) -> Any:
    for x in xs:
        if not _is_number(x):
            return None
    return max(xs)


#: name -> (implementation, fewest arguments, most arguments or None)
FUNCTIONS: Mapping[str, tuple[Callable[..., Any], int, int | None]] = {
    "abs": (_abs, 1, 1),
    "min": (_min, 2, None),
    "max": (_max, 2, None),
}

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ORDERING = frozenset({"<", "<=", ">", ">="})
_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}


#: What builtin values can raise when compared, hashed or combined: "a" < 1, an unhashable
#: value in a frozenset, an int too large for a float. Evaluation catches these where they
#: happen; anything else (an exotic object) is caught once, by Expression.evaluate.
_VALUE_ERRORS = (TypeError, ValueError, ArithmeticError)


def _member(x: Any, items: Collection[Any]) -> bool:
    try:
        return x in items
    except _VALUE_ERRORS:  # an unhashable value against a frozenset of constants
        try:
            return any(x == item for item in tuple(items))
        except _VALUE_ERRORS:
            return False


# --- tokens ----------------------------------------------------------------

_NUM, _STR, _NAME, _KW, _OP, _END = "number", "string", "name", "keyword", "op", "end"
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_PYTHON_SPELLINGS = {"True": "true", "False": "false", "None": "null"}
_TWO_CHAR_OPS = frozenset({"==", "!=", "<=", ">="})
_ONE_CHAR_OPS = frozenset("<>+-*/(),")
_HINTS = {
    "=": "use '==' to compare",
    "!": "use 'not' or '!='",
    "&": "use 'and'",
    "|": "use 'or'",
    ".": "attribute access is not supported",
    "[": "subscripts are not supported",
    "]": "subscripts are not supported",
    ":": "lambdas, slices and dicts are not supported",
    "%": "the operators are + - * /",
    "^": "the operators are + - * /",
}
_ASCII_DIGITS = frozenset("0123456789")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


class _Token:
    __slots__ = ("column", "kind", "text", "value")

    def __init__(self, kind: str, text: str, value: Any, column: int) -> None:
        self.kind = kind
        self.text = text
        self.value = value
        self.column = column

    def describe(self) -> str:
        if self.kind == _END:
            return "end of expression"
        if self.kind in (_OP, _KW):
            return repr(self.text)
        if self.kind == _NAME:
            return f"name {self.text[:20]!r}"
        return f"{self.kind} {self.text[:20]}"  # numbers as written, strings with their quotes


def _error(message: str, column: int, hint: str | None = None) -> RuleError:
    text = f"{message} at column {column}"
    return RuleError(f"{text}; {hint}" if hint else text, column)


def _tokenize(source: str) -> Iterator[_Token]:
    """Tokens, lazily, so that errors are reported left to right as the parser meets them."""
    tokens: list[_Token] = []
    i, n = 0, len(source)
    while i < n:
        if tokens:
            yield from tokens
            tokens.clear()
        c = source[i]
        col = i + 1
        if c in " \t\r\n":
            i += 1
        elif c.isascii() and (c.isalpha() or c == "_"):
            j = i + 1
            while j < n and source[j].isascii() and (source[j].isalnum() or source[j] == "_"):
                j += 1
            word = source[i:j]
            if word in _KEYWORDS:
                tokens.append(_Token(_KW, word, None, col))
            elif word in _PYTHON_SPELLINGS:
                raise _error(f"unknown name {word!r}", col, f"write {_PYTHON_SPELLINGS[word]!r}")
            elif keyword.iskeyword(word):
                raise _error(f"{word!r} is not supported", col, "use 'and', 'or', 'not', 'in' and comparisons")
            else:
                tokens.append(_Token(_NAME, word, word, col))
            i = j
        elif (c.isascii() and c.isdigit()) or (c == "." and source[i + 1 : i + 2] in _ASCII_DIGITS):
            i = _number(source, i, tokens)
        elif c in "'\"":
            i = _string(source, i, tokens)
        elif source[i : i + 2] in _TWO_CHAR_OPS:
            tokens.append(_Token(_OP, source[i : i + 2], None, col))
            i += 2
        elif c in _ONE_CHAR_OPS:
            tokens.append(_Token(_OP, c, None, col))
            i += 1
        else:
            shown = repr(c) if c.isprintable() else f"character U+{ord(c):04X}"
            raise _error(f"unexpected {shown}", col, _HINTS.get(c))
    yield from tokens
    yield _Token(_END, "", None, n + 1)


class _Tokens:
    """The token stream, buffered for the parser's one- and two-token lookahead."""

    def __init__(self, source: str) -> None:
        self._stream = _tokenize(source)
        self._buffer: list[_Token] = []

    def __getitem__(self, index: int) -> _Token:
        buffer = self._buffer
        while len(buffer) <= index:
            if buffer and buffer[-1].kind == _END:
                return buffer[-1]
            buffer.append(next(self._stream))
        return buffer[index]


def _digits(source: str, i: int) -> int:
    while i < len(source) and source[i].isdigit() and source[i].isascii():
        i += 1
    return i


def _number(source: str, start: int, tokens: list[_Token]) -> int:
    n = len(source)
    i = _digits(source, start)
    is_float = False
    if i < n and source[i] == ".":
        is_float = True
        i = _digits(source, i + 1)
    if i < n and source[i] in "eE":
        j = i + 1
        if j < n and source[j] in "+-":
            j += 1
        k = _digits(source, j)
        if k > j:  # otherwise the 'e' is not an exponent and is caught below
            is_float = True
            i = k
    if i < n and (source[i].isalnum() or source[i] in "_."):
        j = i
        while j < n and (source[j].isalnum() or source[j] in "_."):
            j += 1
        raise _error(f"invalid number {source[start:j][:30]!r}", start + 1)
    text = source[start:i]
    tokens.append(_Token(_NUM, text, float(text) if is_float else int(text), start + 1))
    return i


def _string(source: str, start: int, tokens: list[_Token]) -> int:
    quote = source[start]
    chars: list[str] = []
    i, n = start + 1, len(source)
    while i < n:
        c = source[i]
        if c == quote:
            tokens.append(_Token(_STR, source[start : i + 1], "".join(chars), start + 1))
            return i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            escaped = _ESCAPES.get(source[i + 1])
            if escaped is None:
                raise _error(f"unknown escape {source[i : i + 2]!r}", i + 1, "the escapes are \\\\ \\' \\\" \\n \\t")
            chars.append(escaped)
            i += 2
        else:
            chars.append(c)
            i += 1
    raise _error("unterminated string", start + 1, f"close it with {quote}")


# --- nodes -----------------------------------------------------------------


class _Node:
    """One node of the syntax tree; ``build`` turns it into a closure."""

    __slots__ = ("column",)
    #: True when the node always yields true/false (used to reject `amount * 2` as a condition).
    predicate = False

    def __init__(self, column: int) -> None:
        self.column = column

    def children(self) -> Iterator[_Node]:
        return iter(())

    def build(self) -> Fn:
        raise NotImplementedError


def _build_all(nodes: list[_Node]) -> tuple[Fn, ...]:
    # A plain loop: a generator expression would add a stack frame to every level of recursion.
    fns = []
    for node in nodes:
        fns.append(node.build())
    return tuple(fns)


class _Const(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Any, column: int) -> None:
        super().__init__(column)
        self.value = value

    @property
    def predicate(self) -> bool:  # type: ignore[override]
        return isinstance(self.value, bool)

    def build(self) -> Fn:
        value = self.value
        return lambda values: value


class _Name(_Node):
    __slots__ = ("name",)
    # A bare field such as `is_card_not_present` is a reasonable condition.
    predicate = True

    def __init__(self, name: str, column: int) -> None:
        super().__init__(column)
        self.name = name

    def build(self) -> Fn:
        name = self.name
        return lambda values: values.get(name)


class _Neg(_Node):
    __slots__ = ("operand",)

    def __init__(self, operand: _Node, column: int) -> None:
        super().__init__(column)
        self.operand = operand

    def children(self) -> Iterator[_Node]:
        yield self.operand

    def build(self) -> Fn:
        inner = self.operand.build()

        def neg(values: Mapping[str, Any]) -> Any:
            x = inner(values)
            return -x if _is_number(x) else None

        return neg


class _Not(_Node):
    __slots__ = ("operand",)
    predicate = True

    def __init__(self, operand: _Node, column: int) -> None:
        super().__init__(column)
        self.operand = operand

    def children(self) -> Iterator[_Node]:
        yield self.operand

    def build(self) -> Fn:
        inner = self.operand.build()
        return lambda values: not inner(values)


class _Logic(_Node):
    """``and`` / ``or`` over any number of operands, short-circuiting, giving a bool."""

    __slots__ = ("op", "operands")
    predicate = True

    def __init__(self, op: str, operands: list[_Node], column: int) -> None:
        super().__init__(column)
        self.op = op
        self.operands = operands

    def children(self) -> Iterator[_Node]:
        return iter(self.operands)

    def build(self) -> Fn:
        fns = _build_all(self.operands)
        if self.op == "and":
            if len(fns) == 2:
                a, b = fns
                return lambda values: bool(a(values) and b(values))
            if len(fns) == 3:
                a, b, c = fns
                return lambda values: bool(a(values) and b(values) and c(values))

            def all_of(values: Mapping[str, Any]) -> bool:
                for fn in fns:
                    if not fn(values):
                        return False
                return True

            return all_of
        if len(fns) == 2:
            a, b = fns
            return lambda values: bool(a(values) or b(values))

        def any_of(values: Mapping[str, Any]) -> bool:
            for fn in fns:
                if fn(values):
                    return True
            return False

        return any_of


class _Arith(_Node):
    """A left-associative chain at one precedence level: ``a - b + c``."""

    __slots__ = ("first", "rest")

    def __init__(self, first: _Node, rest: list[tuple[str, _Node]], column: int) -> None:
        super().__init__(column)
        self.first = first
        self.rest = rest

    def children(self) -> Iterator[_Node]:
        yield self.first
        for _, node in self.rest:
            yield node

    def build(self) -> Fn:
        first = self.first.build()
        steps = tuple((op == "/", _ARITH[op], node.build()) for op, node in self.rest)
        if len(steps) == 1:
            is_div, op, second = steps[0]

            def binary(values: Mapping[str, Any]) -> Any:
                x = first(values)
                y = second(values)
                if not (_is_number(x) and _is_number(y)) or (is_div and y == 0):
                    return None
                try:
                    return op(x, y)
                except _VALUE_ERRORS:
                    return None

            return binary

        def chain(values: Mapping[str, Any]) -> Any:
            acc = first(values)
            if not _is_number(acc):
                return None
            try:
                for is_div, op, fn in steps:
                    y = fn(values)
                    if not _is_number(y) or (is_div and y == 0):
                        return None
                    acc = op(acc, y)
            except _VALUE_ERRORS:
                return None
            return acc

        return chain


class _List(_Node):
    """The parenthesised right-hand side of ``in``; builds to a container."""

    __slots__ = ("items",)

    def __init__(self, items: list[_Node], column: int) -> None:
        super().__init__(column)
        self.items = items

    def children(self) -> Iterator[_Node]:
        return iter(self.items)

    def constant(self) -> frozenset[Any] | None:
        """The items as a set when they are all constants (which are always hashable)."""
        consts = [item for item in self.items if isinstance(item, _Const)]
        return frozenset(item.value for item in consts) if len(consts) == len(self.items) else None

    def build(self) -> Fn:
        const = self.constant()
        if const is not None:
            return lambda values: const
        fns = _build_all(self.items)
        return lambda values: tuple(fn(values) for fn in fns)


class _Compare(_Node):
    """A comparison chain, as in Python: ``a < b <= c`` is ``a < b and b <= c``."""

    __slots__ = ("first", "rest")
    predicate = True

    def __init__(self, first: _Node, rest: list[tuple[str, _Node]], column: int) -> None:
        super().__init__(column)
        self.first = first
        self.rest = rest

    def children(self) -> Iterator[_Node]:
        yield self.first
        for _, node in self.rest:
            yield node

    def build(self) -> Fn:
        if len(self.rest) == 1:
            op, right = self.rest[0]
            return _build_comparison(self.first, op, right)
        first = self.first.build()
        steps = tuple((_test_for(op), node.build()) for op, node in self.rest)

        def chain(values: Mapping[str, Any]) -> bool:
            x = first(values)
            for test, fn in steps:
                y = fn(values)
                if x is None or y is None or not test(x, y):
                    return False
                x = y
            return True

        return chain


def _test_for(op: str) -> Callable[[Any, Any], bool]:
    if op == "in":
        return _member
    if op == "not in":
        return lambda x, items: not _member(x, items)
    compare = _COMPARE[op]

    def test(x: Any, y: Any) -> bool:
        try:
            return bool(compare(x, y))
        except _VALUE_ERRORS:
            return False

    return test


def _build_comparison(left: _Node, op: str, right: _Node) -> Fn:
    """One comparison, specialised for the shapes rules are made of."""
    if isinstance(right, _Const) and right.value is None:
        # `x == null` / `x != null` are the presence tests; ordering null is refused at parse time.
        inner = left.build()
        if op == "==":
            return lambda values: inner(values) is None
        return lambda values: inner(values) is not None
    if isinstance(left, _Const) and left.value is None:
        return _build_comparison(right, op, left)
    if isinstance(right, _List):
        items = right.constant()
        if items is not None and isinstance(left, _Name):
            name = left.name
            if op == "in":

                def name_in(values: Mapping[str, Any]) -> bool:
                    x = values.get(name)
                    if x is None:
                        return False
                    try:
                        return x in items
                    except _VALUE_ERRORS:
                        return _member(x, tuple(items))

                return name_in

            def name_not_in(values: Mapping[str, Any]) -> bool:
                x = values.get(name)
                if x is None:
                    return False
                try:
                    return x not in items
                except _VALUE_ERRORS:
                    return not _member(x, tuple(items))

            return name_not_in
    compare = _member if op == "in" else (lambda x, ys: not _member(x, ys)) if op == "not in" else _COMPARE[op]
    if isinstance(left, _Name) and isinstance(right, _Const):
        name, const = left.name, right.value

        def name_vs_const(values: Mapping[str, Any]) -> Any:
            x = values.get(name)
            if x is None:
                return False
            try:
                return compare(x, const)
            except _VALUE_ERRORS:
                return False

        return name_vs_const
    lf, rf = left.build(), right.build()

    def general(values: Mapping[str, Any]) -> Any:
        x = lf(values)
        if x is None:
            return False
        y = rf(values)
        if y is None:
            return False
        try:
            return compare(x, y)
        except _VALUE_ERRORS:
            return False

    return general


class _Call(_Node):
    __slots__ = ("args", "name")

    def __init__(self, name: str, args: list[_Node], column: int) -> None:
        super().__init__(column)
        self.name = name
        self.args = args

    def children(self) -> Iterator[_Node]:
        return iter(self.args)

    def build(self) -> Fn:
        impl = FUNCTIONS[self.name][0]
        fns = _build_all(self.args)
        if len(fns) == 1:
            (a,) = fns
            return lambda values: impl(a(values))
        if len(fns) == 2:
            a, b = fns
            return lambda values: impl(a(values), b(values))
        return lambda values: impl(*[fn(values) for fn in fns])


def _fold(node: _Node) -> _Node:
    """Replace a node whose operands are all constants by its value."""
    if isinstance(node, (_Const, _Name, _List)):
        return node
    kids = list(node.children())
    if kids and all(isinstance(kid, _Const) for kid in kids):
        return _Const(node.build()({}), node.column)
    return node


# --- parser ----------------------------------------------------------------

_BP_OR, _BP_AND, _BP_NOT, _BP_COMPARE, _BP_ADD, _BP_MUL, _BP_UNARY = 1, 2, 3, 4, 5, 6, 7
_INFIX_BP = {"or": _BP_OR, "and": _BP_AND, "+": _BP_ADD, "-": _BP_ADD, "*": _BP_MUL, "/": _BP_MUL}
_INFIX_BP.update({op: _BP_COMPARE for op in (*_COMPARE, "in", "not in")})


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _Tokens(source)
        self.pos = 0
        self.depth = 0

    def parse(self) -> _Node:
        node = self._expr(0)
        tok = self.tokens[self.pos]
        if tok.kind != _END:
            raise _error(f"unexpected {tok.describe()}", tok.column, self._after_value_hint(tok))
        return node

    # -- helpers

    def _next(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def _peek_infix(self) -> str | None:
        tok = self.tokens[self.pos]
        if tok.kind == _OP and tok.text in _INFIX_BP:
            return tok.text
        if tok.kind == _KW:
            if tok.text == "not" and self.tokens[self.pos + 1].text == "in" and self.tokens[self.pos + 1].kind == _KW:
                return "not in"
            if tok.text in ("and", "or", "in"):
                return tok.text
        return None

    def _expect_close(self, opener: _Token) -> None:
        tok = self._next()
        if not (tok.kind == _OP and tok.text == ")"):
            if tok.kind == _END:
                raise _error("missing ')'", tok.column, f"the '(' at column {opener.column} is not closed")
            raise _error(f"unexpected {tok.describe()}", tok.column, self._after_value_hint(tok, closing=True))

    @staticmethod
    def _after_value_hint(tok: _Token, closing: bool = False) -> str:
        if tok.kind == _OP and tok.text == ")":
            return "there is no '(' to close"
        if tok.kind == _OP and tok.text == "(":
            return "only abs, min and max can be called"
        want = "',', ')' or an operator" if closing else "an operator"
        return f"expected {want} after a value"

    # -- grammar

    def _expr(self, min_bp: int) -> _Node:
        # Every recursion of the parser (and so every level of the tree, which the compiler
        # and the evaluator recurse over in turn) passes through here: this is the depth limit.
        if self.depth > MAX_NESTING:
            tok = self.tokens[self.pos - 1]  # what opened the level: '(', an operator, 'not', ...
            raise _error(f"expression is nested too deeply (more than {MAX_NESTING} levels)", tok.column)
        self.depth += 1
        try:
            return self._operators(self._prefix(min_bp), min_bp)
        finally:
            self.depth -= 1

    def _operators(self, left: _Node, min_bp: int) -> _Node:
        while True:
            op = self._peek_infix()
            if op is None:
                return left
            bp = _INFIX_BP[op]
            if bp < min_bp:
                return left
            tok = self._next()
            if op == "not in":
                self.pos += 1
            if bp == _BP_COMPARE:
                left = self._comparison(left, op, tok)
            elif op in ("and", "or"):
                right = self._expr(bp + 1)
                if isinstance(left, _Logic) and left.op == op:
                    left.operands.append(right)
                else:
                    left = _Logic(op, [left, right], tok.column)
            else:
                right = self._expr(bp + 1)
                same_level = isinstance(left, _Arith) and _INFIX_BP[left.rest[0][0]] == bp
                if same_level:
                    left.rest.append((op, right))  # type: ignore[attr-defined]
                else:
                    left = _Arith(left, [(op, right)], tok.column)
                left = _fold(left)

    def _comparison(self, first: _Node, op: str, tok: _Token) -> _Node:
        rest: list[tuple[str, _Node]] = []
        left, column = first, tok.column
        while True:
            if op in ("in", "not in"):
                right: _Node = self._in_list(op)
            else:
                right = self._expr(_BP_COMPARE + 1)
                if op in _ORDERING and any(isinstance(n, _Const) and n.value is None for n in (left, right)):
                    raise _error(f"null cannot be compared with {op!r}", tok.column, "use '== null' or '!= null'")
            rest.append((op, right))
            left = right
            nxt = self._peek_infix()
            if nxt is None or _INFIX_BP[nxt] != _BP_COMPARE:
                break
            op, tok = nxt, self._next()
            if op == "not in":
                self.pos += 1
        if len(rest) > 1 and any(isinstance(n, _Const) and n.value is None for n in (first, *(n for _, n in rest))):
            raise _error("null cannot be part of a chained comparison", column, "use 'x == null and ...'")
        return _fold(_Compare(first, rest, column))

    def _in_list(self, op: str) -> _Node:
        opener = self._next()
        if not (opener.kind == _OP and opener.text == "("):
            raise _error(f"expected '(' after {op!r}", opener.column, "write x in (\"a\", \"b\")")
        items: list[_Node] = []
        while True:
            if self.tokens[self.pos].kind == _OP and self.tokens[self.pos].text == ")":
                break
            item = self._expr(0)
            if isinstance(item, _Const) and item.value is None:
                hint = "use '== null' to test for a missing value"
                raise _error(f"null cannot be listed after {op!r}", item.column, hint)
            items.append(item)
            if self.tokens[self.pos].kind == _OP and self.tokens[self.pos].text == ",":
                self.pos += 1
                continue
            break
        self._expect_close(opener)
        if not items:
            raise _error(f"empty list after {op!r}", opener.column)
        return _List(items, opener.column)

    def _prefix(self, min_bp: int) -> _Node:
        tok = self._next()
        kind, text = tok.kind, tok.text
        if kind in (_NUM, _STR):
            return _Const(tok.value, tok.column)
        if kind == _KW and text in ("true", "false", "null"):
            return _Const({"true": True, "false": False, "null": None}[text], tok.column)
        if kind == _NAME:
            nxt = self.tokens[self.pos]
            if nxt.kind == _OP and nxt.text == "(":
                return self._call(tok)
            return _Name(text, tok.column)
        if kind == _KW and text == "not":
            if min_bp > _BP_NOT:
                raise _error("unexpected 'not'", tok.column, "put 'not ...' in parentheses here")
            operand = self._expr(_BP_NOT)
            return _fold(_Not(operand, tok.column))
        if kind == _OP and text == "-":
            operand = self._expr(_BP_UNARY)
            return _fold(_Neg(operand, tok.column))
        if kind == _OP and text == "(":
            node = self._expr(0)
            self._expect_close(tok)
            return node
        if kind == _END:
            prev = self.tokens[self.pos - 2] if self.pos >= 2 else None
            after = f" after {prev.describe()}" if prev is not None else ""
            raise _error("unexpected end of expression", tok.column, f"expected a value{after}")
        raise _error(f"unexpected {tok.describe()}", tok.column, "expected a value")

    def _call(self, name_tok: _Token) -> _Node:
        name = name_tok.text
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"the functions are {', '.join(sorted(FUNCTIONS))}"
            raise _error(f"unknown function {name!r}", name_tok.column, hint)
        opener = self._next()
        args: list[_Node] = []
        while not (self.tokens[self.pos].kind == _OP and self.tokens[self.pos].text == ")"):
            args.append(self._expr(0))
            if self.tokens[self.pos].kind == _OP and self.tokens[self.pos].text == ",":
                self.pos += 1
                continue
            break
        self._expect_close(opener)
        _, fewest, most = FUNCTIONS[name]
        if len(args) < fewest or (most is not None and len(args) > most):
            wanted = f"exactly {fewest}" if most == fewest else f"at least {fewest}"
            plural = "" if fewest == 1 else "s"
            message = f"{name}() at column {name_tok.column} takes {wanted} argument{plural}, got {len(args)}"
            raise RuleError(message, name_tok.column)
        return _fold(_Call(name, args, name_tok.column))


# --- field types -------------------------------------------------------------
#
# A comparison of text with a number is never true (evaluation never raises, so it is simply false):
# `channel > 5` would be a rule that silently never hits. Given the type of each field ("number" or
# "text"), such expressions are refused when the rule is applied, with the pair that cannot match.

_KIND_WORDS = {"number": "a number", "text": "text", "bool": "true/false"}


def _kind_of_const(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "text"
    return "number" if _is_number(value) else None


def _render(node: _Node) -> str:
    """An operand as the user wrote it, near enough to recognise it in a message."""
    if isinstance(node, _Name):
        return node.name
    if isinstance(node, _Const):
        v = node.value
        if isinstance(v, str):
            return repr(v)
        return {True: "true", False: "false", None: "null"}.get(v, str(v)) if isinstance(v, bool) or v is None else str(v)
    if isinstance(node, _Neg):
        return "-" + _render(node.operand)
    if isinstance(node, _Arith):
        return " ".join([_render(node.first), *(f"{op} {_render(n)}" for op, n in node.rest)])
    if isinstance(node, _Call):
        return f"{node.name}({', '.join(_render(a) for a in node.args)})"
    if isinstance(node, _List):
        return f"({', '.join(_render(i) for i in node.items)})"
    return "(...)"


def _check_kind(node: _Node, types: Mapping[str, str]) -> str | None:
    """The kind of value ``node`` gives ("number", "text", "bool"; None if unknown or null); raises
    :class:`RuleError` for text in arithmetic or text compared with a number."""
    if isinstance(node, _Name):
        return types.get(node.name)
    if isinstance(node, _Const):
        return _kind_of_const(node.value)
    if isinstance(node, (_Neg, _Arith, _Call)):
        what = f"{node.name}()" if isinstance(node, _Call) else "arithmetic"
        for kid in node.children():
            kind = _check_kind(kid, types)
            if kind in ("text", "bool"):
                raise _error(f"{_render(kid)} is {_KIND_WORDS[kind]}: {what} needs numbers", kid.column)
        return "number"
    if isinstance(node, _Compare):
        left, left_kind = node.first, _check_kind(node.first, types)
        for op, right in node.rest:
            pairs = right.items if isinstance(right, _List) else [right]
            for item in pairs:
                _check_pair(left, left_kind, op, right, item, _check_kind(item, types))
            left = right
            left_kind = None if isinstance(right, _List) else _check_kind(right, types)
        return "bool"
    for kid in node.children():
        _check_kind(kid, types)
    return "bool" if node.predicate and not isinstance(node, _List) else None


def _check_pair(left: _Node, left_kind: str | None, op: str, right: _Node, item: _Node, item_kind: str | None) -> None:
    if left_kind is None or item_kind is None or left_kind == item_kind or "text" not in (left_kind, item_kind):
        return
    pair = f"{_render(left)} {op} {_render(right)}"
    message = (f"{pair} compares {_render(left)} ({_KIND_WORDS[left_kind]}) with {_render(item)} "
               f"({_KIND_WORDS[item_kind]}), which is never true")
    field, kind = (left, left_kind) if isinstance(left, _Name) else (item, item_kind)
    if isinstance(field, _Name):
        example = f"{field.name} == 'ecom'" if kind == "text" else f"{field.name} > 100"
        hint = f"compare {field.name} with {'text in quotes' if kind == 'text' else 'a number'}, as in {example}"
    else:
        hint = "compare text with text and numbers with numbers"
    raise _error(message, left.column, hint)


# --- public ----------------------------------------------------------------


def _walk(node: _Node) -> Iterator[_Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children())


class Expression:
    """A compiled expression. Build one with :func:`compile_expression`.

    >>> e = compile_expression("max(amount, 10) * 2 >= limit")
    >>> sorted(e.names)
    ['amount', 'limit']
    >>> e.evaluate({"amount": 3, "limit": 20}), e.evaluate({"amount": 3})
    (True, False)
    """

    __slots__ = ("_columns", "_fn", "_root", "names", "predicate", "source")

    def __init__(self, source: str, root: _Node) -> None:
        self.source = source
        columns: dict[str, int] = {}
        for node in _walk(root):
            if isinstance(node, _Name):
                columns[node.name] = min(node.column, columns.get(node.name, node.column))
        #: The fields the expression reads.
        self.names = frozenset(columns)
        #: True when the result is always a bool (or a bare field), i.e. usable as a condition.
        self.predicate = root.predicate
        self._columns = columns
        self._root = root
        self._fn = root.build()

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """The value of the expression; ``None`` for null. Never raises."""
        try:
            return self._fn(values)
        except Exception:  # noqa: BLE001 - the last resort for exotic values, e.g. a raising __bool__
            return None

    def matches(self, values: Mapping[str, Any]) -> bool:
        """Whether the expression is true for ``values``. Never raises."""
        try:
            return bool(self._fn(values))
        except Exception:  # noqa: BLE001 - as in evaluate
            return False

    def check_names(self, known_names: Collection[str] | Mapping[str, str]) -> None:
        """Raise :class:`RuleError` for the first field not in ``known_names``.

        When ``known_names`` maps each field to its type (``"number"`` or ``"text"``), also for text
        used in arithmetic or compared with a number: a comparison that could never be true.

        >>> compile_expression("channel > 5").check_names({"channel": "text"})
        Traceback (most recent call last):
        ...
        fraudstream.core.rules.expression.RuleError: channel > 5 compares channel (text) with 5 (a number), which is never true at column 1; compare channel with text in quotes, as in channel == 'ecom'
        """
        for name, column in sorted(self._columns.items(), key=lambda item: item[1]):
            if name not in known_names:
                close = difflib.get_close_matches(name, list(known_names), n=1)
                raise _error(f"unknown field {name!r}", column, f"did you mean {close[0]!r}?" if close else None)
        if isinstance(known_names, Mapping):
            _check_kind(self._root, known_names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile_expression(source: str, known_names: Collection[str] | Mapping[str, str] | None = None) -> Expression:
    """Parse and compile ``source``; raise :class:`RuleError` if it is not a valid expression.

    With ``known_names``, every field the expression reads must be one of them; when it maps
    fields to types (``{"amount": "number", "channel": "text"}``), types are checked too.

    >>> try:
    ...     compile_expression("amout > 5", known_names={"amount"})
    ... except RuleError as exc:
    ...     print(exc)
    unknown field 'amout' at column 1; did you mean 'amount'?
    """
    if not isinstance(source, str):
        raise RuleError(f"an expression must be a string, got {type(source).__name__}")
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise RuleError(f"expression is {len(source)} characters long; the limit is {MAX_EXPRESSION_LENGTH}")
    if not source.strip():
        raise RuleError("empty expression")
    expression = Expression(source, _Parser(source).parse())
    if known_names is not None:
        expression.check_names(known_names)
    return expression
