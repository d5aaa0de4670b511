"""Mutation testing of the pure core with mutmut: the driver behind ``scripts/mutation``.

mutmut (configured in pyproject.toml, ``[tool.mutmut]``) makes the mutants and runs the
unit tests against each. This driver adds what mutmut lacks and what the project's
targets need:

* two more kinds of mutant: a statement deleted (``pass`` in its place) and an ``if`` or
  ``while`` condition negated, so that a guard that no test needs is noticed;
* the text of an exception's message is not mutated (it is prose; the values it
  carries as attributes are mutated like any other code);
* mutants that no test can kill are listed with the reason in
  ``mutation-equivalents.toml`` and counted apart, so the score is honest and the same
  on every run; a listed mutant that a test kills, or that no longer exists, fails the
  run until the list is corrected;
* per module: mutants, killed, survived, equivalent and the score over the
  non-equivalent mutants, against a target; the exit status is 1 when a target is
  missed.

``--quick`` mutates only the security checks (redirect target, issuer, state and PKCE,
response mode, token-verification claims, cookie canonical form) and asks for all of
their mutants to be killed; the full run asks for 95 % of each module.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS_FILE = ROOT / "mutation-equivalents.toml"
LOG_FILE = Path("mutants") / "mutmut.log"

#: Modules mutated, as in ``[tool.mutmut] only_mutate``.
MODULES = (
    "fastapi_corpauth._protocol",
    "fastapi_corpauth._login_protocol",
    "fastapi_corpauth._signing",
    "fastapi_corpauth._verification",
    "fastapi_corpauth._metadata",
)

#: The security checks: every non-equivalent mutant of these must be killed (the
#: ``--quick`` set). Names are ``module.function`` or ``module.Class.method``.
SECURITY_CHECKS = (
    # redirect target after sign-in (open redirects)
    "fastapi_corpauth._login_protocol.safe_redirect_target",
    # issuer of the callback (RFC 9207) and of the discovery document
    "fastapi_corpauth._login_protocol.check_issuer",
    "fastapi_corpauth._metadata.parse_discovery",
    # state, nonce and PKCE: their entropy, and the callback fields they travel in
    "fastapi_corpauth._login_protocol.new_state",
    "fastapi_corpauth._login_protocol.new_nonce",
    "fastapi_corpauth._login_protocol.pkce_pair",
    "fastapi_corpauth._login_protocol.pkce_challenge",
    "fastapi_corpauth._login_protocol.parse_callback",
    # response mode: a token only where the sign-in asked for it
    "fastapi_corpauth._login_protocol.expected_response_mode",
    "fastapi_corpauth._login_protocol.check_response_mode",
    # token verification: the signature's algorithm and the claims
    "fastapi_corpauth._verification.verify_signature",
    "fastapi_corpauth._verification.access_token_profile",
    "fastapi_corpauth._verification._time",
    "fastapi_corpauth._verification._check_times",
    "fastapi_corpauth._verification._same",
    "fastapi_corpauth._verification._check_issuer",
    "fastapi_corpauth._verification._client_of",
    "fastapi_corpauth._verification._is_service_account",
    "fastapi_corpauth._verification.check_access_token",
    "fastapi_corpauth._verification.check_introspection",
    "fastapi_corpauth._verification.at_hash",
    "fastapi_corpauth._verification.check_id_token",
    # session cookie: signature, age and canonical form
    "fastapi_corpauth._signing.CookieSigner.unsign",
    "fastapi_corpauth._signing._canonical",
)

SECURITY_TARGET = 100.0
MODULE_TARGET = 95.0


# --------------------------------------------------------------------------------------
# The engine: mutmut with two more operators, run in a child process


def _engine(names: Sequence[str], max_children: int) -> None:
    """Run mutmut (in this process) with the project's operators and rules."""
    import libcst as cst
    from mutmut.mutation import file_mutation, mutators

    messages: dict[int, cst.CSTNode] = {}  # id -> node, kept alive so ids stay unique
    message_calls: dict[int, cst.Call] = {}

    def message_argument(node: cst.CSTNode) -> cst.Arg | None:
        if not (isinstance(node, cst.Raise) and isinstance(node.exc, cst.Call)):
            return None
        args = node.exc.args
        if not args or args[0].keyword is not None or args[0].star:
            return None
        value = args[0].value
        prose = (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)
        return args[0] if isinstance(value, prose) else None

    skip_node = file_mutation.MutationVisitor._skip_node_and_children

    def skip_node_and_messages(self: Any, node: cst.CSTNode) -> bool:
        if skip_node(self, node):
            return True
        argument = message_argument(node)
        if argument is not None:
            assert isinstance(node, cst.Raise) and isinstance(node.exc, cst.Call)
            messages[id(argument.value)] = argument.value
            message_calls[id(node.exc)] = node.exc
        return id(node) in messages

    def arg_removal(node: cst.Call) -> Iterator[cst.Call]:
        for mutated in mutators.operator_arg_removal(node):
            if id(node) in message_calls and (
                not mutated.args or mutated.args[0] is not node.args[0]
            ):
                continue  # the message dropped or replaced: prose again
            yield mutated

    create_mutations = file_mutation.create_mutations

    def create_mutations_per_file(*args: Any, **kwargs: Any) -> Any:
        messages.clear()
        message_calls.clear()
        return create_mutations(*args, **kwargs)

    operators = [
        (kind, arg_removal if operator is mutators.operator_arg_removal else operator)
        for kind, operator in mutators.mutation_operators
    ]
    assert any(operator is arg_removal for _, operator in operators), "mutmut changed"
    operators += [
        (cst.IndentedBlock, _delete_statement),
        (cst.If, _negate_condition),
        (cst.While, _negate_condition),
    ]
    file_mutation.mutation_operators = operators  # type: ignore[attr-defined]
    file_mutation.create_mutations = create_mutations_per_file
    file_mutation.MutationVisitor._skip_node_and_children = skip_node_and_messages  # type: ignore[method-assign]

    from mutmut.__main__ import _run

    _run(list(names), max_children)


def _deletable(statement: Any) -> bool:
    import libcst as cst

    if isinstance(statement, cst.If | cst.For | cst.While):
        return True
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    small = statement.body[0]
    if isinstance(small, cst.Expr):  # a call for its effect, not a docstring or "..."
        return not isinstance(small.value, cst.SimpleString | cst.ConcatenatedString | cst.Ellipsis)
    if isinstance(small, cst.Assign):  # a change to an object, not a local name
        return all(
            isinstance(target.target, cst.Subscript | cst.Attribute) for target in small.targets
        )
    return isinstance(small, cst.Raise | cst.Del | cst.Continue | cst.Break | cst.AugAssign)


def _delete_statement(block: Any) -> Iterator[Any]:
    """Each deletable statement of ``block`` replaced by ``pass``."""
    import libcst as cst

    for index, statement in enumerate(block.body):
        if _deletable(statement):
            body = list(block.body)
            body[index] = cst.SimpleStatementLine(
                body=[cst.Pass()], leading_lines=statement.leading_lines
            )
            yield block.with_changes(body=body)


def _negate_condition(node: Any) -> Iterator[Any]:
    """``if c:`` becomes ``if not (c):`` (and the same for ``elif`` and ``while``)."""
    import libcst as cst

    test = node.test.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    yield node.with_changes(test=cst.UnaryOperation(operator=cst.Not(), expression=test))


# --------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Mutant:
    name: str  # mutmut's key, e.g. fastapi_corpauth._signing.x_foo__mutmut_3
    module: str  # fastapi_corpauth._signing
    function: str  # fastapi_corpauth._signing.CookieSigner.unsign
    status: str
    before: str  # the lines the mutant changes, stripped, one per line
    after: str

    @property
    def killed(self) -> bool:
        return self.status in ("killed", "timeout", "segfault")


@dataclass(frozen=True)
class Equivalent:
    function: str
    before: str
    after: str
    kind: str
    note: str

    def matches(self, mutant: Mutant) -> bool:
        return (
            mutant.function == self.function
            and mutant.before == self.before
            and mutant.after == self.after
        )


@dataclass
class Row:
    label: str
    target: float
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    equivalent: int = 0
    survivors: list[Mutant] = field(default_factory=list)

    def add(self, mutant: Mutant, equivalent: bool) -> None:
        self.mutants += 1
        if equivalent:
            self.equivalent += 1
        elif mutant.killed:
            self.killed += 1
        else:
            self.survived += 1
            self.survivors.append(mutant)

    @property
    def score(self) -> float:
        counted = self.mutants - self.equivalent
        return 100.0 * self.killed / counted if counted else 100.0

    @property
    def met(self) -> bool:
        return self.score >= self.target


def _function_name(mutant_name: str) -> tuple[str, str]:
    from mutmut.utils.format_utils import (
        mangled_name_from_mutant_name,
        orig_function_and_class_names_from_key,
    )

    module = mangled_name_from_mutant_name(mutant_name).rpartition(".")[0]
    function, class_name = orig_function_and_class_names_from_key(mutant_name)
    qualified = f"{class_name}.{function}" if class_name else function
    return module, f"{module}.{qualified}"


def _changed_lines(path: Path, mutant_name: str) -> tuple[str, str]:
    """The lines of the function that the mutant removes and adds, stripped."""
    from mutmut.mutation.data import MutantLineSpans
    from mutmut.mutation.diff_apply import generated_function_names

    spans = MutantLineSpans.load(path)
    assert spans is not None, f"no line index for {path}"
    original, mutated = spans.read_function_sources(list(generated_function_names(mutant_name)))
    # The two copies differ in their names: the ``def`` lines are left out.
    names = generated_function_names(mutant_name)
    original_lines = [line for line in original.splitlines() if names[0] not in line]
    mutated_lines = [line for line in mutated.splitlines() if names[1] not in line]
    removed: list[str] = []
    added: list[str] = []
    for line in difflib.unified_diff(original_lines, mutated_lines, lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        text = _without_marker(line[1:]).strip()
        (removed if line.startswith("-") else added).append(text)
    return "\n".join(removed), "\n".join(added)


def _without_marker(line: str) -> str:
    from mutmut.mutation.trampoline_templates import GENERATED_MARKER

    return line.replace(GENERATED_MARKER, "").rstrip()


def load_mutants(functions: set[str] | None) -> list[Mutant]:
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code

    mutants: list[Mutant] = []
    for module in MODULES:
        path = Path(*module.split(".")).with_suffix(".py")
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            module_name, function = _function_name(name)
            if functions is not None and function not in functions:
                continue
            before, after = _changed_lines(path, name)
            mutants.append(
                Mutant(
                    name=name,
                    module=module_name,
                    function=function,
                    status=status_by_exit_code[exit_code],
                    before=before,
                    after=after,
                )
            )
    return mutants


def load_equivalents(path: Path = EQUIVALENTS_FILE) -> list[Equivalent]:
    document = tomllib.loads(path.read_text("utf-8"))
    kinds: dict[str, str] = document.get("kinds", {})
    entries: list[Equivalent] = []
    for entry in document.get("equivalent", []):
        kind = entry["kind"]
        if kind not in kinds:
            raise SystemExit(f"{path.name}: kind {kind!r} has no reason under [kinds]")
        entries.append(
            Equivalent(
                function=entry["function"],
                before=_normalise(entry["before"]),
                after=_normalise(entry["after"]),
                kind=kind,
                note=entry.get("note", ""),
            )
        )
    return entries


def _normalise(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip("\n").splitlines())


# --------------------------------------------------------------------------------------
# Report


def report(
    mutants: Sequence[Mutant],
    equivalents: Sequence[Equivalent],
    *,
    quick: bool,
    elapsed: float,
) -> int:
    rows: dict[str, Row] = {}
    security = Row("security checks", SECURITY_TARGET)
    matched: set[Equivalent] = set()
    wrongly_listed: list[tuple[Mutant, Equivalent]] = []
    for mutant in mutants:
        entry = next((e for e in equivalents if e.matches(mutant)), None)
        if entry is not None:
            matched.add(entry)
            if mutant.killed:
                wrongly_listed.append((mutant, entry))
        is_equivalent = entry is not None and not mutant.killed
        target = SECURITY_TARGET if quick else MODULE_TARGET
        short = mutant.module.rpartition(".")[2]
        rows.setdefault(mutant.module, Row(short, target)).add(mutant, is_equivalent)
        if mutant.function in SECURITY_CHECKS:
            security.add(mutant, is_equivalent)

    in_scope = {m.function for m in mutants}
    stale = [e for e in equivalents if e not in matched and e.function in in_scope]
    if not quick:
        stale += [e for e in equivalents if e.function not in in_scope]

    printed: set[str] = set()
    for row in [*rows.values(), security]:
        for mutant in row.survivors:
            if mutant.name in printed:
                continue
            printed.add(mutant.name)
            print(f"SURVIVED {mutant.function}  ({mutant.name}, {mutant.status})")
            for line in mutant.before.splitlines():
                print(f"    - {line}")
            for line in mutant.after.splitlines():
                print(f"    + {line}")
    for mutant, entry in wrongly_listed:
        print(f"KILLED, BUT LISTED AS EQUIVALENT ({entry.kind}) {mutant.function}  ({mutant.name})")
        print(f"    - {entry.before}\n    + {entry.after}")
    for entry in stale:
        print(f"LISTED AS EQUIVALENT, BUT NO SUCH MUTANT ({entry.kind}) {entry.function}")
        print(f"    - {entry.before}\n    + {entry.after}")

    mode = "quick: the security checks" if quick else "full: the pure core and the verifier"
    print()
    print(f"Mutation testing ({mode}), killed by the unit tests")
    header = f"{'':<18}{'mutants':>9}{'killed':>8}{'survived':>10}{'equivalent':>12}{'score':>9}"
    print(header + f"{'target':>9}")
    shown = [*rows.values(), security]
    total = Row("all", MODULE_TARGET)
    for row in rows.values():
        total.mutants += row.mutants
        total.killed += row.killed
        total.survived += row.survived
        total.equivalent += row.equivalent
    if not quick:
        shown.append(total)
    for row in shown:
        print(
            f"{row.label:<18}{row.mutants:>9}{row.killed:>8}{row.survived:>10}"
            f"{row.equivalent:>12}{row.score:>8.1f}%{row.target:>8.0f}%"
            + ("" if row.met else "  MISSED")
        )
    print(f"({elapsed:.0f} s; equivalent mutants are listed in {EQUIVALENTS_FILE.name})")
    failed = [row for row in shown if not row.met]
    return 1 if failed or wrongly_listed or stale else 0


# --------------------------------------------------------------------------------------
# Command line


def _mutmut_names(functions: Iterable[str]) -> list[str]:
    """mutmut's name patterns for the mutants of ``functions``."""
    from mutmut.utils.format_utils import make_mutant_key

    patterns = []
    for function in functions:
        module = next(m for m in MODULES if function.startswith(m + "."))
        parts = function[len(module) + 1 :].split(".")
        class_name = parts[0] if len(parts) == 2 else None
        patterns.append(f"{module}.{make_mutant_key(parts[-1], class_name)}__mutmut_*")
    return patterns


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutation", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the security checks")
    parser.add_argument(
        "--max-children", type=int, default=os.cpu_count() or 2, help="parallel test runs"
    )
    parser.add_argument("--engine", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("names", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.chdir(ROOT)

    if args.engine:
        _engine(args.names, args.max_children)
        return 0

    started = time.monotonic()
    names = _mutmut_names(SECURITY_CHECKS) if args.quick else []
    shutil.rmtree("mutants", ignore_errors=True)  # every run starts afresh
    LOG_FILE.parent.mkdir()
    with LOG_FILE.open("w") as log:
        engine = subprocess.run(  # noqa: S603 - this very script, with our own arguments
            [
                sys.executable,
                __file__,
                "--engine",
                f"--max-children={args.max_children}",
                *names,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if engine.returncode != 0:
        print(LOG_FILE.read_text("utf-8", "replace")[-4000:], file=sys.stderr)
        print(f"mutmut failed (exit status {engine.returncode}); log: {LOG_FILE}", file=sys.stderr)
        return 2
    functions = set(SECURITY_CHECKS) if args.quick else None
    mutants = load_mutants(functions)
    return report(mutants, load_equivalents(), quick=args.quick, elapsed=time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
