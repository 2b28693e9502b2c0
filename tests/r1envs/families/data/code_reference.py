"""Reference solutions of the shipped code problems (tasks/code/*.jsonl), by problem id.

``python tests/r1envs/families/data/code_reference.py`` rewrites the JSONL files from
``PROBLEMS`` (the solutions stay here, out of the shipped data).
"""

from __future__ import annotations

import json
from pathlib import Path

A = "assert"
S = "stdio"


def _a(pid, question, entry, tests, solution):
    return {
        "id": pid,
        "question": question,
        "test_style": A,
        "entry_point": entry,
        "tests": tests,
        "solution": solution,
    }


def _s(pid, question, pairs, solution):
    return {
        "id": pid,
        "question": question,
        "test_style": S,
        "tests": [{"input": i, "output": o} for i, o in pairs],
        "solution": solution,
    }


PROBLEMS = [
    _a(
        "a-digit-sum",
        "Return the sum of the decimal digits of a non-negative integer n.",
        "digit_sum",
        [
            "assert digit_sum(0) == 0",
            "assert digit_sum(7) == 7",
            "assert digit_sum(12345) == 15",
            "assert digit_sum(10**20) == 1",
            "assert digit_sum(999) == 27",
        ],
        "def digit_sum(n):\n    return sum(int(c) for c in str(n))\n",
    ),
    _a(
        "a-is-palindrome",
        "Return True if the string s reads the same forwards and backwards "
        "when only letters and digits are kept and case is ignored, else False.",
        "is_palindrome",
        [
            "assert is_palindrome('') is True",
            "assert is_palindrome('Abba') is True",
            "assert is_palindrome('No lemon, no melon') is True",
            "assert is_palindrome('abc') is False",
            "assert is_palindrome('a1b2') is False",
            "assert is_palindrome('12 21') is True",
        ],
        "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]\n",
    ),
    _a(
        "a-second-largest",
        "Return the second largest distinct value of a list of integers, or "
        "None when there are fewer than two distinct values.",
        "second_largest",
        [
            "assert second_largest([3, 1, 2]) == 2",
            "assert second_largest([5, 5, 5]) is None",
            "assert second_largest([]) is None",
            "assert second_largest([-1, -7, -1, -3]) == -3",
            "assert second_largest([10, 9]) == 9",
        ],
        "def second_largest(xs):\n    s = sorted(set(xs))\n    return s[-2] if len(s) > 1 else None\n",
    ),
    _a(
        "a-run-length",
        "Run-length encode a string: return a list of (character, count) tuples "
        "for each maximal run, in order.",
        "run_length",
        [
            "assert run_length('') == []",
            "assert run_length('aaab') == [('a', 3), ('b', 1)]",
            "assert run_length('abba') == [('a', 1), ('b', 2), ('a', 1)]",
            "assert run_length('zzzzzz') == [('z', 6)]",
        ],
        "def run_length(s):\n    out = []\n    for c in s:\n        if out and out[-1][0] == c:\n"
        "            out[-1] = (c, out[-1][1] + 1)\n        else:\n            out.append((c, 1))\n"
        "    return out\n",
    ),
    _a(
        "a-mean-std",
        "Return a tuple (mean, population standard deviation) of a non-empty list "
        "of numbers, as floats.",
        "mean_std",
        [
            "assert mean_std([1, 1, 1]) == (1.0, 0.0)",
            "assert mean_std([2, 4, 4, 4, 5, 5, 7, 9]) == (5.0, 2.0)",
            "assert abs(mean_std([1, 2])[1] - 0.5) < 1e-9",
            "assert mean_std([0.1, 0.2, 0.3])[0] == 0.2",
        ],
        "def mean_std(xs):\n    m = sum(xs) / len(xs)\n"
        "    return (float(m), (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5)\n",
    ),
    _a(
        "a-word-count",
        "Return a dict mapping each lower-cased word of the text to how many times "
        "it occurs. Words are maximal runs of letters.",
        "word_count",
        [
            "assert word_count('') == {}",
            "assert word_count('a A a') == {'a': 3}",
            "assert word_count(\"It's it!\") == {'it': 2, 's': 1}",
            "assert word_count('one two, two') == {'one': 1, 'two': 2}",
        ],
        "import re\n\ndef word_count(text):\n    out = {}\n    for w in re.findall('[A-Za-z]+', text):\n"
        "        out[w.lower()] = out.get(w.lower(), 0) + 1\n    return out\n",
    ),
    _a(
        "a-flatten",
        "Flatten an arbitrarily nested list of integers into a flat list, keeping "
        "the left-to-right order.",
        "flatten",
        [
            "assert flatten([]) == []",
            "assert flatten([1, [2, [3, [4]]], 5]) == [1, 2, 3, 4, 5]",
            "assert flatten([[[]], []]) == []",
            "assert flatten([[1, 2], 3]) == [1, 2, 3]",
        ],
        "def flatten(xs):\n    out = []\n    for x in xs:\n"
        "        out.extend(flatten(x) if isinstance(x, list) else [x])\n    return out\n",
    ),
    _a(
        "a-primes-below",
        "Return the sorted list of primes strictly less than n.",
        "primes_below",
        [
            "assert primes_below(2) == []",
            "assert primes_below(10) == [2, 3, 5, 7]",
            "assert len(primes_below(1000)) == 168",
            "assert primes_below(3) == [2]",
            "assert primes_below(0) == []",
        ],
        "def primes_below(n):\n    return [p for p in range(2, n) if all(p % d for d in range(2, int(p**0.5) + 1))]\n",
    ),
    _a(
        "a-balanced",
        "Return True when every bracket in s ((), [], {}) is closed in the right "
        "order; other characters are ignored.",
        "balanced",
        [
            "assert balanced('') is True",
            "assert balanced('([]{})') is True",
            "assert balanced('(]') is False",
            "assert balanced('((') is False",
            "assert balanced('a(b[c]d)e') is True",
            "assert balanced(')(') is False",
        ],
        "def balanced(s):\n    st, pairs = [], {')': '(', ']': '[', '}': '{'}\n    for c in s:\n"
        "        if c in '([{':\n            st.append(c)\n        elif c in pairs:\n"
        "            if not st or st.pop() != pairs[c]:\n                return False\n    return not st\n",
    ),
    _a(
        "a-rotate",
        "Rotate a list right by k positions (k may exceed the length or be 0); return a new list.",
        "rotate",
        [
            "assert rotate([1, 2, 3, 4], 1) == [4, 1, 2, 3]",
            "assert rotate([1, 2, 3], 5) == [2, 3, 1]",
            "assert rotate([], 3) == []",
            "assert rotate(['a'], 0) == ['a']",
        ],
        "def rotate(xs, k):\n    if not xs:\n        return []\n    k %= len(xs)\n    return xs[-k:] + xs[:-k] if k else list(xs)\n",
    ),
    _a(
        "a-roman",
        "Convert an integer 1..3999 to a Roman numeral string.",
        "to_roman",
        [
            "assert to_roman(1) == 'I'",
            "assert to_roman(4) == 'IV'",
            "assert to_roman(1994) == 'MCMXCIV'",
            "assert to_roman(3999) == 'MMMCMXCIX'",
            "assert to_roman(58) == 'LVIII'",
        ],
        "def to_roman(n):\n    vals = [(1000,'M'),(900,'CM'),(500,'D'),(400,'CD'),(100,'C'),(90,'XC'),"
        "(50,'L'),(40,'XL'),(10,'X'),(9,'IX'),(5,'V'),(4,'IV'),(1,'I')]\n    out = ''\n"
        "    for v, s in vals:\n        while n >= v:\n            out += s\n            n -= v\n    return out\n",
    ),
    _a(
        "a-merge-intervals",
        "Merge overlapping closed intervals given as [start, end] lists; return "
        "the merged intervals sorted by start.",
        "merge_intervals",
        [
            "assert merge_intervals([]) == []",
            "assert merge_intervals([[1, 3], [2, 6], [8, 10]]) == [[1, 6], [8, 10]]",
            "assert merge_intervals([[5, 6], [1, 5]]) == [[1, 6]]",
            "assert merge_intervals([[1, 2], [3, 4]]) == [[1, 2], [3, 4]]",
        ],
        "def merge_intervals(iv):\n    out = []\n    for a, b in sorted(iv):\n        if out and a <= out[-1][1]:\n"
        "            out[-1][1] = max(out[-1][1], b)\n        else:\n            out.append([a, b])\n    return out\n",
    ),
    _a(
        "a-two-sum",
        "Given a list of integers and a target, return the pair of indices (i, j) with "
        "i < j whose values sum to the target, as a tuple; exactly one such pair exists.",
        "two_sum",
        [
            "assert two_sum([2, 7, 11, 15], 9) == (0, 1)",
            "assert two_sum([3, 2, 4], 6) == (1, 2)",
            "assert two_sum([0, 4, 3, 0], 0) == (0, 3)",
            "assert two_sum([-3, 4, 3, 90], 0) == (0, 2)",
        ],
        "def two_sum(xs, t):\n    seen = {}\n    for j, x in enumerate(xs):\n        if t - x in seen:\n"
        "            return (seen[t - x], j)\n        seen[x] = j\n",
    ),
    _a(
        "a-gcd-list",
        "Return the greatest common divisor of a non-empty list of positive integers.",
        "gcd_list",
        [
            "assert gcd_list([12]) == 12",
            "assert gcd_list([12, 18, 30]) == 6",
            "assert gcd_list([7, 13]) == 1",
            "assert gcd_list([2**40, 2**35 * 3]) == 2**35",
        ],
        "import math\n\ndef gcd_list(xs):\n    g = 0\n    for x in xs:\n        g = math.gcd(g, x)\n    return g\n",
    ),
    _a(
        "a-anagram-groups",
        "Group words that are anagrams of each other. Return a list of groups; "
        "each group keeps the input order, and groups are ordered by their first word's position.",
        "anagram_groups",
        [
            "assert anagram_groups([]) == []",
            "assert anagram_groups(['eat', 'tea', 'tan', 'ate', 'nat', 'bat']) == [['eat', 'tea', 'ate'], ['tan', 'nat'], ['bat']]",
            "assert anagram_groups(['a']) == [['a']]",
            "assert anagram_groups(['ab', 'ba', 'ab']) == [['ab', 'ba', 'ab']]",
        ],
        "def anagram_groups(ws):\n    groups = {}\n    for w in ws:\n        groups.setdefault(''.join(sorted(w)), []).append(w)\n"
        "    return list(groups.values())\n",
    ),
    _a(
        "a-matrix-transpose",
        "Return the transpose of a rectangular matrix given as a list of rows.",
        "transpose",
        [
            "assert transpose([[1, 2, 3]]) == [[1], [2], [3]]",
            "assert transpose([[1, 2], [3, 4]]) == [[1, 3], [2, 4]]",
            "assert transpose([]) == []",
            "assert transpose([[1], [2]]) == [[1, 2]]",
        ],
        "def transpose(m):\n    return [list(r) for r in zip(*m)]\n",
    ),
    _a(
        "a-binary-search",
        "Return the index of target in a sorted list of distinct integers, or -1.",
        "search",
        [
            "assert search([], 3) == -1",
            "assert search([1, 3, 5, 7], 7) == 3",
            "assert search([1, 3, 5, 7], 4) == -1",
            "assert search(list(range(0, 100000, 2)), 4242) == 2121",
            "assert search([5], 5) == 0",
        ],
        "import bisect\n\ndef search(xs, t):\n    i = bisect.bisect_left(xs, t)\n    return i if i < len(xs) and xs[i] == t else -1\n",
    ),
    _a(
        "a-fib-mod",
        "Return the n-th Fibonacci number modulo 1_000_000_007 (F(0) = 0, F(1) = 1); "
        "n can be as large as 10**6.",
        "fib_mod",
        [
            "assert fib_mod(0) == 0",
            "assert fib_mod(1) == 1",
            "assert fib_mod(10) == 55",
            "assert fib_mod(100) == 687995182",
            "assert fib_mod(10**6) == 918091266",
        ],
        "def fib_mod(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, (a + b) % 1_000_000_007\n    return a\n",
    ),
    _a(
        "a-dedupe",
        "Remove duplicates from a list while keeping the first occurrence of each value, "
        "and return the counts of removed items as a second value: return (unique_list, removed).",
        "dedupe",
        [
            "assert dedupe([]) == ([], 0)",
            "assert dedupe([1, 1, 2, 1, 3]) == ([1, 2, 3], 2)",
            "assert dedupe(['b', 'a', 'b']) == (['b', 'a'], 1)",
        ],
        "def dedupe(xs):\n    seen, out = set(), []\n    for x in xs:\n        if x not in seen:\n"
        "            seen.add(x)\n            out.append(x)\n    return (out, len(xs) - len(out))\n",
    ),
    _a(
        "a-class-stack",
        "Implement a class MinStack with push(x), pop() (returns the value), and "
        "get_min() (the smallest value currently on the stack), each in O(1). Also write a "
        "function run(ops) that applies a list of operations to a new MinStack: ('push', x), "
        "('pop',) or ('min',), and returns the list of results of the pop and min operations.",
        "run",
        [
            "assert run([('push', 3), ('push', 1), ('min',), ('pop',), ('min',)]) == [1, 1, 3]",
            "assert run([('push', 2), ('push', 2), ('pop',), ('min',)]) == [2, 2]",
            "assert run([]) == []",
        ],
        "class MinStack:\n    def __init__(self):\n        self.s = []\n    def push(self, x):\n"
        "        self.s.append((x, min(x, self.s[-1][1]) if self.s else x))\n    def pop(self):\n"
        "        return self.s.pop()[0]\n    def get_min(self):\n        return self.s[-1][1]\n\n"
        "def run(ops):\n    st, out = MinStack(), []\n    for op in ops:\n        if op[0] == 'push':\n"
        "            st.push(op[1])\n        elif op[0] == 'pop':\n            out.append(st.pop())\n"
        "        else:\n            out.append(st.get_min())\n    return out\n",
    ),
    # ---- stdio --------------------------------------------------------------------------
    _s(
        "s-sum-pairs",
        "The first line holds T. Each of the next T lines holds two integers a and b. "
        "Print a+b for each line.",
        [
            ("2\n1 2\n-5 5\n", "3\n0\n"),
            ("1\n1000000000000 1\n", "1000000000001\n"),
            ("3\n0 0\n7 -8\n100 23\n", "0\n-1\n123\n"),
        ],
        "t = int(input())\nfor _ in range(t):\n    a, b = map(int, input().split())\n    print(a + b)\n",
    ),
    _s(
        "s-reverse-words",
        "Read one line and print its words in reverse order, separated by single spaces.",
        [
            ("hello world\n", "world hello\n"),
            ("a\n", "a\n"),
            ("  many   spaces here \n", "here spaces many\n"),
            ("one two three four\n", "four three two one\n"),
        ],
        "print(' '.join(input().split()[::-1]))\n",
    ),
    _s(
        "s-max-subarray",
        "The first line holds n, the second n integers. Print the largest sum of a "
        "non-empty contiguous subarray.",
        [
            ("5\n-2 1 -3 4 -1\n", "4\n"),
            ("3\n-5 -1 -8\n", "-1\n"),
            ("9\n-2 1 -3 4 -1 2 1 -5 4\n", "6\n"),
            ("1\n7\n", "7\n"),
        ],
        "input()\nbest = cur = None\nfor x in map(int, input().split()):\n    cur = x if cur is None or cur < 0 else cur + x\n"
        "    best = cur if best is None else max(best, cur)\nprint(best)\n",
    ),
    _s(
        "s-grid-paths",
        "Read r and c (1 <= r, c <= 15) and print the number of monotone lattice paths "
        "from the top-left to the bottom-right cell of an r x c grid, moving only right or down.",
        [("1 1\n", "1\n"), ("2 2\n", "2\n"), ("3 7\n", "28\n"), ("15 15\n", "40116600\n")],
        "import math\nr, c = map(int, input().split())\nprint(math.comb(r + c - 2, r - 1))\n",
    ),
    _s(
        "s-average",
        "The first line holds n, the second n numbers. Print their average with 3 "
        "digits after the decimal point.",
        [("3\n1 2 4\n", "2.333\n"), ("1\n-5\n", "-5.000\n"), ("4\n0.5 0.5 0.5 1.5\n", "0.750\n")],
        "n = int(input())\nprint(f'{sum(map(float, input().split())) / n:.3f}')\n",
    ),
    _s(
        "s-count-vowels",
        "Read lines until end of input and print, for each line, the number of "
        "vowels (a, e, i, o, u, either case) in it.",
        [("hello\nAEIOU\nxyz\n", "2\n5\n0\n"), ("Programming in Python\n", "5\n"), ("\n", "0\n")],
        "import sys\nfor line in sys.stdin.read().split('\\n')[:-1] or ['']:\n"
        "    print(sum(c in 'aeiouAEIOU' for c in line))\n",
    ),
    _s(
        "s-fizzbuzz",
        "Read n and print the numbers 1..n, one per line, but Fizz for multiples of 3, "
        "Buzz for multiples of 5 and FizzBuzz for multiples of both.",
        [
            ("5\n", "1\n2\nFizz\n4\nBuzz\n"),
            ("1\n", "1\n"),
            ("15\n", "1\n2\nFizz\n4\nBuzz\nFizz\n7\n8\nFizz\nBuzz\n11\nFizz\n13\n14\nFizzBuzz\n"),
        ],
        "for i in range(1, int(input()) + 1):\n    print('Fizz' * (i % 3 == 0) + 'Buzz' * (i % 5 == 0) or i)\n",
    ),
    _s(
        "s-sort-names",
        "The first line holds n; each of the next n lines holds a name and an age. "
        "Print the names sorted by age (oldest first), ties broken alphabetically.",
        [
            ("3\nann 30\nbob 25\ncid 30\n", "ann\ncid\nbob\n"),
            ("1\nzed 1\n", "zed\n"),
            ("4\nd 5\nc 5\nb 6\na 4\n", "b\nc\nd\na\n"),
        ],
        "n = int(input())\nrows = [input().split() for _ in range(n)]\n"
        "for name, _ in sorted(rows, key=lambda r: (-int(r[1]), r[0])):\n    print(name)\n",
    ),
    _s(
        "s-shortest-path",
        "The first line holds n and m; the next m lines hold undirected edges u v w "
        "(1-based vertices, positive weights). Print the shortest distance from vertex 1 to vertex "
        "n, or -1 if n is unreachable.",
        [
            ("3 3\n1 2 1\n2 3 2\n1 3 5\n", "3\n"),
            ("2 0\n", "-1\n"),
            ("4 2\n1 2 7\n3 4 1\n", "-1\n"),
            ("1 0\n", "0\n"),
        ],
        "import heapq\nn, m = map(int, input().split())\ng = [[] for _ in range(n + 1)]\nfor _ in range(m):\n"
        "    u, v, w = map(int, input().split())\n    g[u].append((v, w))\n    g[v].append((u, w))\n"
        "dist = {1: 0}\npq = [(0, 1)]\nwhile pq:\n    d, u = heapq.heappop(pq)\n    if d > dist.get(u, 1e18):\n"
        "        continue\n    for v, w in g[u]:\n        if d + w < dist.get(v, 1e18):\n            dist[v] = d + w\n"
        "            heapq.heappush(pq, (d + w, v))\nprint(dist.get(n, -1))\n",
    ),
    _s(
        "s-matrix-sum",
        "Read r and c, then r rows of c integers. Print the row sums on one line and "
        "the column sums on the next, space separated.",
        [
            ("2 3\n1 2 3\n4 5 6\n", "6 15\n5 7 9\n"),
            ("1 1\n-4\n", "-4\n-4\n"),
            ("3 2\n1 2\n3 4\n5 6\n", "3 7 11\n9 12\n"),
        ],
        "r, c = map(int, input().split())\nm = [list(map(int, input().split())) for _ in range(r)]\n"
        "print(*[sum(x) for x in m])\nprint(*[sum(col) for col in zip(*m)])\n",
    ),
    _s(
        "s-circle-area",
        "Read a radius r (a real number) and print the area of the circle; answers "
        "within 1e-6 relative error are accepted.",
        [("1\n", "3.141592653589793\n"), ("2.5\n", "19.634954084936208\n"), ("0\n", "0\n")],
        "import math\nr = float(input())\nprint(math.pi * r * r)\n",
    ),
    _s(
        "s-balanced-count",
        "Read a string of parentheses and print the length of the longest "
        "balanced (well-formed) substring.",
        [("(()\n", "2\n"), (")()())\n", "4\n"), ("\n", "0\n"), ("((()))\n", "6\n")],
        "s = input().strip()\nst, best = [-1], 0\nfor i, c in enumerate(s):\n    if c == '(':\n        st.append(i)\n"
        "    else:\n        st.pop()\n        if st:\n            best = max(best, i - st[-1])\n        else:\n"
        "            st.append(i)\nprint(best)\n",
    ),
    _s(
        "s-prime-factors",
        "For each integer n (2 <= n <= 10**12) on its own line, print its prime "
        "factors in increasing order (with multiplicity), space separated.",
        [
            ("12\n", "2 2 3\n"),
            ("97\n2\n", "97\n2\n"),
            ("1000000000000\n", "2 2 2 2 2 2 2 2 2 2 2 2 5 5 5 5 5 5 5 5 5 5 5 5\n"),
            ("999999000001\n", "999999000001\n"),
        ],
        "import sys\nfor tok in sys.stdin.read().split():\n    n, f, out = int(tok), 2, []\n    while f * f <= n:\n"
        "        while n % f == 0:\n            out.append(f)\n            n //= f\n        f += 1\n"
        "    if n > 1:\n        out.append(n)\n    print(*out)\n",
    ),
    _s(
        "s-caesar",
        "The first line holds a shift k (0..25), the second a line of text. Print the "
        "text with each letter shifted forward by k places in the alphabet (keeping case); other "
        "characters are unchanged.",
        [
            ("3\nabc xyz\n", "def abc\n"),
            ("0\nHello, World!\n", "Hello, World!\n"),
            ("13\nUryyb\n", "Hello\n"),
        ],
        "k = int(input())\ns = input()\nout = []\nfor ch in s:\n    if ch.isalpha() and ch.isascii():\n"
        "        base = ord('a') if ch.islower() else ord('A')\n        out.append(chr((ord(ch) - base + k) % 26 + base))\n"
        "    else:\n        out.append(ch)\nprint(''.join(out))\n",
    ),
]


def write_jsonl(root: Path) -> None:
    """Write the problems (without solutions) to ``root/assert.jsonl`` and ``root/stdio.jsonl``."""
    for style, name in ((A, "assert.jsonl"), (S, "stdio.jsonl")):
        with open(root / name, "w", encoding="utf-8") as fh:
            for p in PROBLEMS:
                if p["test_style"] == style:
                    rec = {k: v for k, v in p.items() if k != "solution"}
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_jsonl(Path(__file__).resolve().parents[4] / "tasks" / "code")
