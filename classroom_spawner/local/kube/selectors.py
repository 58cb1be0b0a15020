"""Label and field selectors, parsed and matched the way the API server does.

Label selectors (``labelSelector=``): ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``,
``k notin (a,b)``, ``k`` (exists), ``!k`` (does not exist), and ``k>n`` / ``k<n``
(integers), separated by commas. ``!=`` and ``notin`` also match objects that do
not have the label, as in Kubernetes.

Field selectors (``fieldSelector=``): ``f=v``, ``f==v``, ``f!=v`` separated by
commas, with backslash escapes; only the fields a resource supports are
accepted (see :mod:`.resources`).
"""

import re

from . import errors

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY_RE = re.compile(rf"^({_DNS_SUBDOMAIN}/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")

LABEL_VALUE_HELP = (
    "a valid label must be an empty string or consist of alphanumeric characters,"
    " '-', '_' or '.', and must start and end with an alphanumeric character"
    " (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is"
    " '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
LABEL_KEY_HELP = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must"
    " start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name', "
    " or '123-abc', regex used for validation is"
    " '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def label_key_error(key):
    """Why ``key`` is not a valid label key, or None."""
    if not key:
        return "name part must be non-empty"
    name = key.rsplit("/", 1)[-1]
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if "/" in key and len(key.split("/", 1)[0]) > 253:
        return "prefix part must be no more than 253 characters"
    if not _KEY_RE.match(key):
        return LABEL_KEY_HELP
    return None


def label_value_error(value):
    """Why ``value`` is not a valid label value, or None."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _VALUE_RE.match(value):
        return LABEL_VALUE_HELP
    return None


class Requirement:
    def __init__(self, key, op, values=()):
        self.key = key
        self.op = op
        self.values = tuple(values)

    def matches(self, labels):
        present = self.key in labels
        value = labels.get(self.key)
        op = self.op
        if op in ("=", "=="):
            return present and value == self.values[0]
        if op == "!=":
            return not present or value != self.values[0]
        if op == "in":
            return present and value in self.values
        if op == "notin":
            return not present or value not in self.values
        if op == "exists":
            return present
        if op == "!":
            return not present
        if op in (">", "<"):
            if not present:
                return False
            try:
                have = int(value)
            except ValueError:
                return False
            want = int(self.values[0])
            return have > want if op == ">" else have < want
        raise AssertionError(op)

    def __repr__(self):
        return f"Requirement({self.key!r}, {self.op!r}, {self.values!r})"


def _bad_label_selector(selector, why):
    return errors.bad_request(
        f"unable to parse requirement: {why}"
        if selector
        else f"invalid label selector: {why}"
    )


def _split_top_level(text):
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_RE = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(.*?)\s*$")


class LabelSelector:
    """A parsed ``labelSelector`` string; an empty selector matches everything."""

    def __init__(self, requirements=()):
        self.requirements = list(requirements)

    @classmethod
    def parse(cls, text):
        if text is None or not text.strip():
            return cls()
        reqs = []
        for part in _split_top_level(text):
            part = part.strip()
            if not part:
                raise _bad_label_selector(
                    text, f"found '', expected: identifier in {text!r}"
                )
            m = _SET_RE.match(part)
            if m:
                key, op, body = m.groups()
                values = [v.strip() for v in body.split(",")] if body.strip() else []
                if not values:
                    raise _bad_label_selector(
                        text, "for 'in', 'notin' operators, values set can't be empty"
                    )
                reqs.append(cls._requirement(text, key, op, values))
                continue
            if part.startswith("!"):
                reqs.append(cls._requirement(text, part[1:].strip(), "!", []))
                continue
            m = _CMP_RE.match(part)
            if m:
                key, op, value = m.groups()
                if op in ("<", ">"):
                    try:
                        int(value)
                    except ValueError:
                        raise _bad_label_selector(
                            text,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                reqs.append(cls._requirement(text, key, op, [value]))
                continue
            if re.match(r"^\S+$", part) and not any(c in part for c in "=!<>()"):
                reqs.append(cls._requirement(text, part, "exists", []))
                continue
            raise _bad_label_selector(text, f"unexpected syntax in {part!r}")
        return cls(reqs)

    @staticmethod
    def _requirement(text, key, op, values):
        why = label_key_error(key)
        if why:
            raise _bad_label_selector(text, f'key: Invalid value: "{key}": {why}')
        if op not in ("<", ">"):
            for i, v in enumerate(values):
                why = label_value_error(v)
                if why:
                    raise _bad_label_selector(
                        text, f'values[{i}][{key}]: Invalid value: "{v}": {why}'
                    )
        return Requirement(key, op, values)

    def matches(self, labels):
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self):
        return not self.requirements


def _split_escaped(text, sep):
    """Split on ``sep`` not preceded by a backslash; keep escapes."""
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value):
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


class FieldSelector:
    """A parsed ``fieldSelector`` for one resource type."""

    def __init__(self, terms=()):
        self.terms = list(terms)

    @classmethod
    def parse(cls, text, resource):
        if text is None or not text.strip():
            return cls()
        terms = []
        for part in _split_escaped(text, ","):
            if not part:
                continue
            for op in ("!=", "==", "="):
                idx = cls._find_op(part, op)
                if idx >= 0:
                    name = part[:idx].strip()
                    value = _unescape(part[idx + len(op) :])
                    break
            else:
                raise errors.bad_request(
                    f"invalid selector: '{text}'; can't understand '{part}'"
                )
            if name not in resource.selectable_fields:
                raise errors.bad_request(f'field label not supported: {name}')
            terms.append((name, "!=" if op == "!=" else "=", value))
        return cls(terms)

    @staticmethod
    def _find_op(part, op):
        i = 0
        while i < len(part):
            if part[i] == "\\":
                i += 2
                continue
            if part.startswith(op, i):
                # "=" must not be the tail of "!=" or "=="
                if op == "=" and (
                    (i > 0 and part[i - 1] in "!=") or part.startswith("==", i)
                ):
                    i += 1
                    continue
                return i
            i += 1
        return -1

    def matches(self, resource, obj):
        for name, op, value in self.terms:
            have = resource.field_value(obj, name)
            if op == "=" and have != value:
                return False
            if op == "!=" and have == value:
                return False
        return True

    @property
    def empty(self):
        return not self.terms
