"""The language server (`fusionc lsp`), driven as an editor drives it: a subprocess speaking JSON-RPC
over stdio, framed by hand (Content-Length headers). Every wait has a timeout, so a hung server
fails the test instead of hanging it."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from fusionlang.lsp import LineIndex, analyse, hover_markdown

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0  # seconds for one answer; generous, the machine may be shared
SPINS = (ROOT / "examples" / "spins.fusion").read_text(encoding="utf-8")
UNKNOWN_NAME = "diagram d {\n    group SU2\n    input  a, b : 1/2\n    output c : 0 + 1\n    a, x -> c\n}\n"
SELECTION_RULE = ("diagram spins {\n    group SU2\n    input  s1, s2, s3 : 1/2\n    output total : 5/2\n"
                  "    s1, s2 -> s12\n    s12, s3 -> total\n}\n")
UNFORMATTED = "diagram d { group O3; input x,y:0e+1o; x,y->z [weights=none] }"


class Client:
    """A minimal LSP client: one server subprocess, a reader thread, requests by id."""

    def __init__(self) -> None:
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (the server's stderr, closed in close())
        self.process = subprocess.Popen([sys.executable, "-m", "fusionlang", "lsp"], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.backlog: list[dict[str, Any]] = []
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            headers: dict[str, str] = {}
            while (line := stream.readline().decode("ascii")) not in ("\r\n", ""):
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            if not line:
                self.inbox.put(None)  # the server closed its output
                return
            self.inbox.put(json.loads(stream.read(int(headers["content-length"]))))

    def send(self, payload: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **payload}).encode("utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body)
        self.process.stdin.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: dict[str, Any] | None) -> Any:
        """Send a request and return its result (fails on an error response)."""
        self.next_id += 1
        number = self.next_id
        self.send({"id": number, "method": method, "params": params})
        answer = self.wait_for(lambda m: m.get("id") == number and "method" not in m, f"the answer to {method}")
        assert "error" not in answer, answer["error"]
        return answer["result"]

    def wait_for(self, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first message (earlier ones kept aside included) that ``wanted`` accepts."""
        for index, message in enumerate(self.backlog):
            if wanted(message):
                return self.backlog.pop(index)
        while True:
            try:
                message = self.inbox.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(f"no {what} within {TIMEOUT} s; server log:\n{self.stderr()}")
            if message is None:
                pytest.fail(f"the server stopped before {what}; server log:\n{self.stderr()}")
            if wanted(message):
                return message
            self.backlog.append(message)

    def diagnostics(self, uri: str) -> list[dict[str, Any]]:
        """The next diagnostics published for ``uri``."""
        found = self.wait_for(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                              and m["params"]["uri"] == uri, f"diagnostics for {uri}")
        return list(found["params"]["diagnostics"])

    def open(self, uri: str, text: str) -> list[dict[str, Any]]:
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "fusion", "version": 1,
                                                               "text": text}})
        return self.diagnostics(uri)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def close(self) -> int:
        """``shutdown`` then ``exit``; the exit code of the server (killed if it hangs)."""
        try:
            if self.process.poll() is None:
                assert self.request("shutdown", None) is None
                self.notify("exit", {})
            return self.process.wait(timeout=TIMEOUT)
        except (subprocess.TimeoutExpired, OSError):
            self.process.kill()
            self.process.wait()
            raise
        finally:
            for stream in (self.process.stdin, self.process.stdout, self.log):
                if stream is not None:
                    stream.close()


def initialize(client: Client, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    result = client.request("initialize", {"processId": None, "rootUri": ROOT.as_uri(),
                                           "capabilities": capabilities or {}})
    client.notify("initialized", {})
    return dict(result["capabilities"])


@pytest.fixture(scope="module")
def session() -> Iterator[tuple[Client, dict[str, Any]]]:
    client = Client()
    try:
        capabilities = initialize(client)
        yield client, capabilities
    finally:
        client.close()


@pytest.fixture
def client(session: tuple[Client, dict[str, Any]]) -> Client:
    return session[0]


def uri(name: str) -> str:
    return (ROOT / "build" / "lsp-test" / name).as_uri()


def check_json(text: str) -> list[dict[str, Any]]:
    """What `fusionc check --format json` reports for ``text``."""
    done = subprocess.run([sys.executable, "-m", "fusionlang", "check", "--format", "json", "-"], input=text,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    return list(json.loads(done.stdout)["diagnostics"])


def fmt(text: str) -> str:
    """What `fusionc fmt -` prints for ``text``."""
    done = subprocess.run([sys.executable, "-m", "fusionlang", "fmt", "-"], input=text, capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=True)
    return done.stdout


def position(text: str, needle: str, occurrence: int = 0, shift: int = 0) -> dict[str, int]:
    """The 0-based LSP position of the ``occurrence``-th ``needle`` in ASCII ``text``."""
    offset = -1
    for _ in range(occurrence + 1):
        offset = text.index(needle, offset + 1)
    offset += shift
    line = text.count("\n", 0, offset)
    return {"line": line, "character": offset - (text.rfind("\n", 0, offset) + 1)}


def as_range(found: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The LSP range of a `fusionc check --format json` diagnostic (1-based → 0-based)."""
    return {"start": {"line": found["line"] - 1, "character": found["column"] - 1},
            "end": {"line": found["end_line"] - 1, "character": found["end_column"] - 1}}


def test_initialize_advertises_every_feature(session: tuple[Client, dict[str, Any]]) -> None:
    capabilities = session[1]
    assert capabilities["hoverProvider"]
    assert capabilities["definitionProvider"]
    assert capabilities["documentFormattingProvider"]
    assert capabilities["textDocumentSync"]["openClose"]


@pytest.mark.parametrize("text,codes", [(UNKNOWN_NAME, ["E104", "E101"]), (SELECTION_RULE, ["E201"])],
                         ids=["unknown-name", "selection-rule"])
def test_diagnostics_are_those_of_fusionc_check(client: Client, text: str, codes: list[str]) -> None:
    expected = check_json(text)
    assert [d["code"] for d in expected] == codes
    found = client.open(uri(f"broken-{codes[-1]}.fusion"), text)
    assert [(d["code"], d["message"], d["range"]) for d in found] == \
        [(d["code"], d["message"], as_range(d)) for d in expected]
    assert all(d["severity"] == 1 and d["source"] == "fusionc" for d in found)
    helps = [info["message"] for d in found for info in d.get("relatedInformation", [])]
    assert [f"help: {d['hint']}" for d in expected] == [h for h in helps if h.startswith("help: ")]


def test_a_valid_file_has_no_diagnostics_and_a_fix_clears_them(client: Client) -> None:
    assert client.open(uri("spins.fusion"), SPINS) == []
    name = uri("fixed.fusion")
    assert [d["code"] for d in client.open(name, UNKNOWN_NAME)] == ["E104", "E101"]
    client.notify("textDocument/didChange", {"textDocument": {"uri": name, "version": 2},
                                             "contentChanges": [{"text": UNKNOWN_NAME.replace("a, x", "a, b")}]})
    assert client.diagnostics(name) == []


def test_an_incremental_change_is_applied_before_checking(client: Client) -> None:
    name = uri("incremental.fusion")
    assert client.open(name, SPINS) == []
    at = position(SPINS, "s12, s3 -> total")
    change = {"range": {"start": at, "end": {**at, "character": at["character"] + 3}}, "text": "s99"}
    client.notify("textDocument/didChange", {"textDocument": {"uri": name, "version": 2}, "contentChanges": [change]})
    found = {d["code"]: d for d in client.diagnostics(name)}
    assert sorted(found) == ["E101", "E104"]  # s99 is unknown, s12 now unused
    assert found["E101"]["message"] == "unknown name `s99`" and found["E101"]["range"]["start"] == at


def test_columns_count_utf16_code_units(client: Client) -> None:
    text = UNKNOWN_NAME.replace("a, x", "a, \N{GRINNING FACE}")  # outside the BMP: two UTF-16 units
    (found,) = client.open(uri("emoji.fusion"), text)
    assert found["code"] == "E001"
    assert found["range"] == {"start": {"line": 4, "character": 7}, "end": {"line": 4, "character": 9}}


def test_hover_on_a_leg_shows_its_irreps_dimension_and_statements(client: Client) -> None:
    name = uri("hover.fusion")
    client.open(name, SPINS)
    at = position(SPINS, "s12, s3", shift=1)
    hover = client.request("textDocument/hover", {"textDocument": {"uri": name}, "position": at})
    text = hover["contents"]["value"]
    assert "`s12` : `0 + 1`" in text and "dim 4" in text and "inferred" in text
    assert "line 6 `s1, s2 -> s12`: writes it" in text and "line 7 `s12, s3 -> total`: reads it" in text
    assert hover["range"]["start"] == position(SPINS, "s12, s3")
    declared = client.request("textDocument/hover", {"textDocument": {"uri": name},
                                                     "position": position(SPINS, "total : 1/2")})
    assert "**output** `total` : `1/2 + 3/2` (dim 6, declared)" in declared["contents"]["value"]
    nothing = client.request("textDocument/hover", {"textDocument": {"uri": name},
                                                    "position": position(SPINS, "group")})
    assert nothing is None


def test_hover_in_a_diagram_with_errors_shows_what_is_declared(client: Client) -> None:
    name = uri("hover-broken.fusion")
    client.open(name, UNKNOWN_NAME)
    hover = client.request("textDocument/hover", {"textDocument": {"uri": name},
                                                  "position": position(UNKNOWN_NAME, "a, x")})
    text = hover["contents"]["value"]
    assert "**input** `a` : `1/2`" in text and "not inferred" in text


def test_definition_jumps_from_a_use_to_the_declaration(client: Client) -> None:
    name = uri("definition.fusion")
    client.open(name, SPINS)

    def definition(at: dict[str, int]) -> dict[str, Any]:
        return dict(client.request("textDocument/definition", {"textDocument": {"uri": name}, "position": at}))

    found = definition(position(SPINS, "s1, s2 -> s12"))
    assert found["uri"] == name and found["range"]["start"] == position(SPINS, "s1, s2, s3")
    inferred = definition(position(SPINS, "s12, s3"))  # an inferred edge: its first writer
    assert inferred["range"]["start"] == position(SPINS, "s12 ")
    output = definition(position(SPINS, "total\n"))
    assert output["range"]["start"] == position(SPINS, "total : ")
    assert client.request("textDocument/definition", {"textDocument": {"uri": name},
                                                      "position": position(SPINS, "group")}) is None


def test_formatting_gives_what_fusionc_fmt_prints(client: Client) -> None:
    name = uri("format.fusion")
    client.open(name, UNFORMATTED)
    options = {"tabSize": 4, "insertSpaces": True}
    (edit,) = client.request("textDocument/formatting", {"textDocument": {"uri": name}, "options": options})
    assert edit["newText"] == fmt(UNFORMATTED)
    assert edit["range"] == {"start": {"line": 0, "character": 0},
                             "end": {"line": 0, "character": len(UNFORMATTED)}}
    spins = uri("format-spins.fusion")
    client.open(spins, SPINS)
    assert not client.request("textDocument/formatting", {"textDocument": {"uri": spins}, "options": options})
    broken = uri("format-broken.fusion")
    client.open(broken, "diagram d {\n    x -> \n}\n")
    assert not client.request("textDocument/formatting", {"textDocument": {"uri": broken}, "options": options})


@pytest.mark.parametrize("text", ["\x00\ufffd garbage {{{ ->", "diagram d {" * 200, "}" * 50, "diagram",
                                  "diagram d { group O3; input x : 99999999999x0e; x -> y [weights = path] }"],
                         ids=["binary", "nested", "closing", "keyword", "huge"])
def test_bad_input_gives_diagnostics_and_the_server_lives_on(client: Client, text: str) -> None:
    name = uri(f"bad-{abs(hash(text))}.fusion")
    found = client.open(name, text)
    assert found and all(d["code"].startswith("E") for d in found)
    assert [d["code"] for d in found] == [d["code"] for d in check_json(text)]
    for line in range(3):
        at = {"line": line, "character": 5}
        client.request("textDocument/hover", {"textDocument": {"uri": name}, "position": at})
        client.request("textDocument/definition", {"textDocument": {"uri": name}, "position": at})
    client.request("textDocument/formatting", {"textDocument": {"uri": name}, "options": {"tabSize": 4,
                                                                                          "insertSpaces": True}})


def test_shutdown_and_exit_end_the_server() -> None:
    client = Client()
    initialize(client)
    assert client.close() == 0


@pytest.mark.parametrize("encoding,columns", [("utf-16", [0, 1, 3, 4]), ("utf-8", [0, 1, 5, 6]),
                                              ("utf-32", [0, 1, 2, 3])])
def test_line_index_counts_code_units_of_the_encoding(encoding: str, columns: list[int]) -> None:
    text = "x\r\na\N{GRINNING FACE}b\nlast"
    index = LineIndex(text, encoding)
    assert [index.position(offset) for offset in (3, 4, 5, 6)] == [(1, c) for c in columns]
    assert [index.offset(1, c) for c in columns] == [3, 4, 5, 6]
    assert index.position(0) == (0, 0) and index.position(2) == (0, 1) and index.position(99) == (2, 4)
    assert index.offset(1, 99) == 6 and index.offset(9, 0) == len(text) and index.offset(-1, 0) == 0


def test_a_client_asking_for_utf8_gets_byte_columns() -> None:
    client = Client()
    try:
        capabilities = initialize(client, {"general": {"positionEncodings": ["utf-8"]}})
        assert capabilities["positionEncoding"] == "utf-8"
        text = UNKNOWN_NAME.replace("a, x", "a, \N{GRINNING FACE}")
        (found,) = client.open(uri("emoji-utf8.fusion"), text)
        assert found["range"]["end"] == {"line": 4, "character": 7 + 4}
    finally:
        assert client.close() == 0


def test_per_names_an_index_input_for_hover_and_definition() -> None:
    text = (ROOT / "examples" / "mace.fusion").read_text(encoding="utf-8")
    analysis = analyse(text)
    use = text.index("per = species") + len("per = ")
    found = hover_markdown(analysis, use)
    assert found is not None and found[1].startswith("**index** `species` : 3 classes, on nodes")
    assert "selects its weights (per)" in found[1]
    declared = analysis.definition(use)
    assert declared is not None and text[declared.start - len("index  "):declared.end] == "index  species"


def test_definitions_stay_inside_their_diagram_even_when_names_repeat() -> None:
    block = "diagram d {\n    group O3\n    input  x : 0e\n    output y : 0e\n    x -> y  [weights = path]\n}\n"
    text = block + "\n" + block  # the second `d` is E110, its names are still its own
    analysis = analyse(text)
    assert [d.code for d in analysis.result.diagnostics] == ["E110"]
    second = analysis.definition(text.rindex("x -> y"))
    assert second is not None and second.start == text.rindex("x : 0e")
