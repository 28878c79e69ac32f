"""Compatibility tests: the official ``anthropic`` Python SDK (2.12.0) against Paddock.

The only thing changed on the client is ``base_url``; there is no monkey-patching and no custom
transport.  Run with::

    PADDOCK_URL=http://127.0.0.1:PORT /tmp/sdkvenv/bin/python -m pytest tests/sdk/test_compat.py

Every test creates its own resources and tags them with a fresh ``uuid4().hex`` so reruns
against the same server do not interfere.  Agents cannot be deleted through the API, so tests
archive the agents they create (archived agents are excluded from the default list).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

import anthropic

MODEL = "claude-sonnet-4-6"

# Upper bound for anything that waits on the server (stream delivery, processing of an event).
WAIT_SECONDS = 10.0
# Upper bound for a whole agent turn (two model calls, a runner started, a tool run).
TURN_SECONDS = 60.0


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[anthropic.Anthropic]:
    if not os.environ.get("PADDOCK_URL"):
        pytest.skip("PADDOCK_URL is not set (e.g. PADDOCK_URL=http://127.0.0.1:PORT)")
    c = anthropic.Anthropic(base_url=os.environ["PADDOCK_URL"], api_key=os.environ.get("PADDOCK_API_KEY", "paddock-test"), max_retries=0)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


def _best_effort(fn: Callable[[], Any]) -> None:
    """Cleanup helper: ignore any failure (the resource may already be gone)."""
    try:
        fn()
    except Exception:
        pass


def _make_agent(client: anthropic.Anthropic, tag: str, **overrides: Any) -> Any:
    params: Dict[str, Any] = dict(
        model=MODEL,
        name=f"compat-agent-{tag}",
        system="You are a test agent.",
        metadata={"compat_tag": tag},
        tools=[{"type": "agent_toolset_20260401"}],
    )
    params.update(overrides)
    return client.beta.agents.create(**params)


def _make_environment(client: anthropic.Anthropic, tag: str) -> Any:
    return client.beta.environments.create(
        name=f"compat-env-{tag}",
        config={"type": "cloud", "networking": {"type": "unrestricted"}},
        metadata={"compat_tag": tag},
    )


def _text_message(text: str) -> Dict[str, Any]:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _texts(event: Any) -> List[str]:
    return [block.text for block in (getattr(event, "content", None) or []) if getattr(block, "type", None) == "text"]


# --------------------------------------------------------------------------------------------
# 1. agents: create / retrieve / versioned update / optimistic concurrency / versions / archive
# --------------------------------------------------------------------------------------------


def test_agent_lifecycle_and_versioning(client: anthropic.Anthropic, tag: str) -> None:
    name = f"compat-agent-{tag}"
    system_v1 = f"You are version one ({tag})."
    system_v2 = f"You are version two ({tag})."
    metadata = {"compat_tag": tag, "purpose": "lifecycle"}

    created = client.beta.agents.create(
        model=MODEL,
        name=name,
        system=system_v1,
        metadata=metadata,
        tools=[{"type": "agent_toolset_20260401"}],
    )
    try:
        assert created.type == "agent"
        assert isinstance(created.id, str) and created.id
        assert created.version == 1
        assert created.archived_at is None

        got = client.beta.agents.retrieve(created.id)
        assert got.id == created.id
        assert got.type == "agent"
        assert got.name == name
        assert got.system == system_v1
        assert got.metadata == metadata
        assert got.version == 1
        # the model is always returned in object form
        assert got.model.id == MODEL
        assert [t.type for t in got.tools] == ["agent_toolset_20260401"]
        assert got.created_at is not None and got.updated_at is not None
        assert got.archived_at is None

        updated = client.beta.agents.update(created.id, version=1, system=system_v2)
        assert updated.id == created.id
        assert updated.version == 2
        assert updated.system == system_v2
        # fields that were not sent are kept
        assert updated.name == name
        assert updated.metadata == metadata
        assert updated.model.id == MODEL

        # stale optimistic-concurrency version -> 409 -> ConflictError
        with pytest.raises(anthropic.ConflictError) as conflict:
            client.beta.agents.update(created.id, version=1, system="this must not be stored")
        assert conflict.value.status_code == 409
        # The SDK retries 409 (2 retries by default) unless the server says not to.
        assert conflict.value.response.headers.get("x-should-retry") == "false", (
            "a 409 version conflict should carry `x-should-retry: false`, otherwise clients with "
            "default max_retries replay the update"
        )

        latest = client.beta.agents.retrieve(created.id)
        assert latest.version == 2
        assert latest.system == system_v2

        old = client.beta.agents.retrieve(created.id, version=1)
        assert old.id == created.id
        assert old.version == 1
        assert old.system == system_v1

        versions = list(client.beta.agents.versions.list(created.id))
        assert len(versions) == 2
        assert sorted(v.version for v in versions) == [1, 2]
        assert all(v.id == created.id for v in versions)
        by_version = {v.version: v for v in versions}
        assert by_version[1].system == system_v1
        assert by_version[2].system == system_v2

        archived = client.beta.agents.archive(created.id)
        assert archived.id == created.id
        assert archived.archived_at is not None
        assert client.beta.agents.retrieve(created.id).archived_at is not None
    finally:
        _best_effort(lambda: client.beta.agents.archive(created.id))


# --------------------------------------------------------------------------------------------
# 2. listing and cursor paging (auto-pagination and manual get_next_page)
# --------------------------------------------------------------------------------------------


def test_agent_list_paging(client: anthropic.Anthropic, tag: str) -> None:
    created_ids: List[str] = []
    try:
        for i in range(5):
            agent = _make_agent(client, tag, name=f"compat-page-{tag}-{i}")
            created_ids.append(agent.id)
        assert len(set(created_ids)) == 5

        # auto-pagination: iterating the page object follows `next_page`
        auto_ids = [a.id for a in client.beta.agents.list(limit=2)]
        for agent_id in created_ids:
            assert auto_ids.count(agent_id) == 1, f"{agent_id} seen {auto_ids.count(agent_id)} times (auto)"

        # manual paging
        page = client.beta.agents.list(limit=2)
        manual: List[Any] = []
        pages = 0
        while True:
            pages += 1
            assert len(page.data) <= 2, "limit=2 must cap the page size"
            manual.extend(page.data)
            if not page.has_next_page():
                assert not page.next_page
                break
            assert page.next_page, "has_next_page() implies a next_page cursor"
            page = page.get_next_page()
            assert pages < 10_000, "pagination does not terminate"
        manual_ids = [a.id for a in manual]
        for agent_id in created_ids:
            assert manual_ids.count(agent_id) == 1, f"{agent_id} seen {manual_ids.count(agent_id)} times (manual)"
        assert pages >= 3, "5 agents with limit=2 need at least 3 pages"
        assert len(manual_ids) == len(set(manual_ids)), "an agent appeared on two pages"

        tagged = sorted(a.id for a in manual if (a.metadata or {}).get("compat_tag") == tag)
        assert tagged == sorted(created_ids)

        # iter_pages yields the same pages
        paged_ids = [a.id for p in client.beta.agents.list(limit=2).iter_pages() for a in p.data]
        assert sorted(paged_ids) == sorted(manual_ids)
    finally:
        for agent_id in created_ids:
            _best_effort(lambda agent_id=agent_id: client.beta.agents.archive(agent_id))


# --------------------------------------------------------------------------------------------
# 3. environments
# --------------------------------------------------------------------------------------------


def test_environment_lifecycle(client: anthropic.Anthropic, tag: str) -> None:
    name = f"compat-env-{tag}"
    env = client.beta.environments.create(
        name=name,
        config={
            "type": "cloud",
            "networking": {
                "type": "limited",
                "allowed_hosts": ["api.example.com"],
                "allow_package_managers": True,
            },
            "packages": {"pip": ["requests"]},
        },
        metadata={"compat_tag": tag},
    )
    deleted = False
    try:
        assert env.type == "environment"
        assert isinstance(env.id, str) and env.id
        assert env.name == name
        assert env.archived_at is None

        got = client.beta.environments.retrieve(env.id)
        assert got.id == env.id
        assert got.name == name
        assert got.metadata == {"compat_tag": tag}
        assert got.config.type == "cloud"
        assert got.config.networking.type == "limited"
        assert got.config.networking.allowed_hosts == ["api.example.com"]
        assert got.config.networking.allow_package_managers is True
        assert got.config.networking.allow_mcp_servers is False  # default
        assert got.config.packages.pip == ["requests"]
        assert got.config.packages.npm == []  # response lists are always present

        renamed = client.beta.environments.update(env.id, name=f"{name}-renamed")
        assert renamed.id == env.id
        assert renamed.name == f"{name}-renamed"
        assert renamed.config.type == "cloud"  # config omitted -> kept
        assert renamed.config.packages.pip == ["requests"]
        assert client.beta.environments.retrieve(env.id).name == f"{name}-renamed"

        listed = {e.id: e for e in client.beta.environments.list(limit=100)}
        assert env.id in listed
        assert listed[env.id].name == f"{name}-renamed"

        archived = client.beta.environments.archive(env.id)
        assert archived.id == env.id
        assert archived.archived_at is not None
        assert env.id not in {e.id for e in client.beta.environments.list(limit=100)}
        assert env.id in {e.id for e in client.beta.environments.list(limit=100, include_archived=True)}

        result = client.beta.environments.delete(env.id)
        deleted = True
        assert result.type == "environment_deleted"
        assert result.id == env.id

        with pytest.raises(anthropic.NotFoundError) as missing:
            client.beta.environments.retrieve(env.id)
        assert missing.value.status_code == 404
    finally:
        if not deleted:
            _best_effort(lambda: client.beta.environments.delete(env.id))


# --------------------------------------------------------------------------------------------
# 4. sessions
# --------------------------------------------------------------------------------------------


def test_session_lifecycle(client: anthropic.Anthropic, tag: str) -> None:
    system_v1 = f"system v1 {tag}"
    system_v2 = f"system v2 {tag}"
    agent = _make_agent(client, tag, system=system_v1)
    env = _make_environment(client, tag)
    session_ids: List[str] = []
    try:
        s1 = client.beta.sessions.create(agent=agent.id, environment_id=env.id, title=f"compat-session-{tag}")
        session_ids.append(s1.id)
        assert s1.type == "session"
        assert isinstance(s1.id, str) and s1.id
        assert s1.status == "idle"  # new sessions start idle
        assert s1.environment_id == env.id
        assert s1.title == f"compat-session-{tag}"
        assert s1.archived_at is None
        # the agent snapshot is pinned at creation
        assert s1.agent.type == "agent"
        assert s1.agent.id == agent.id
        assert s1.agent.version == 1
        assert s1.agent.system == system_v1
        assert s1.agent.model.id == MODEL

        # a new agent version does not move the existing session; a string reference pins latest
        client.beta.agents.update(agent.id, version=1, system=system_v2)
        assert client.beta.sessions.retrieve(s1.id).agent.version == 1
        s_latest = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
        session_ids.append(s_latest.id)
        assert s_latest.agent.version == 2
        assert s_latest.agent.system == system_v2

        # explicit version reference
        s2 = client.beta.sessions.create(
            agent={"type": "agent", "id": agent.id, "version": 1},
            environment_id=env.id,
            title=f"compat-session-pinned-{tag}",
        )
        session_ids.append(s2.id)
        assert s2.status == "idle"
        assert s2.agent.id == agent.id
        assert s2.agent.version == 1
        assert s2.agent.system == system_v1

        renamed = client.beta.sessions.update(s1.id, title=f"compat-session-renamed-{tag}")
        assert renamed.id == s1.id
        assert renamed.title == f"compat-session-renamed-{tag}"

        # paging with limit=1, scoped to this agent
        page = client.beta.sessions.list(agent_id=agent.id, limit=1)
        seen: List[Any] = []
        pages = 0
        while True:
            pages += 1
            assert len(page.data) <= 1, "limit=1 must cap the page size"
            seen.extend(page.data)
            if not page.has_next_page():
                break
            page = page.get_next_page()
            assert pages < 1_000, "pagination does not terminate"
        seen_ids = [s.id for s in seen]
        assert len(seen_ids) == len(set(seen_ids)), "a session appeared on two pages"
        assert sorted(seen_ids) == sorted(session_ids), "agent_id filter + paging must return exactly our sessions"
        assert pages >= 3
        # auto-pagination over the same query
        assert sorted(s.id for s in client.beta.sessions.list(agent_id=agent.id, limit=1)) == sorted(session_ids)

        got = client.beta.sessions.retrieve(s1.id)
        assert got.id == s1.id
        assert got.title == f"compat-session-renamed-{tag}"
        assert got.status == "idle"
        assert got.agent.version == 1

        archived = client.beta.sessions.archive(s2.id)
        assert archived.id == s2.id
        assert archived.archived_at is not None
        assert client.beta.sessions.retrieve(s2.id).archived_at is not None

        result = client.beta.sessions.delete(s1.id)
        assert result.type == "session_deleted"
        assert result.id == s1.id
        session_ids.remove(s1.id)
        with pytest.raises(anthropic.NotFoundError):
            client.beta.sessions.retrieve(s1.id)
    finally:
        for session_id in session_ids:
            _best_effort(lambda session_id=session_id: client.beta.sessions.delete(session_id))
        _best_effort(lambda: client.beta.environments.delete(env.id))
        _best_effort(lambda: client.beta.agents.archive(agent.id))


# --------------------------------------------------------------------------------------------
# 5. events: send / list / stream
# --------------------------------------------------------------------------------------------


def _find_event(client: anthropic.Anthropic, session_id: str, event_id: str) -> Optional[Any]:
    for event in client.beta.sessions.events.list(session_id, limit=100):
        if event.id == event_id:
            return event
    return None


def test_events_send_list_stream(client: anthropic.Anthropic, tag: str) -> None:
    agent = _make_agent(client, tag)
    env = _make_environment(client, tag)
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, title=f"compat-events-{tag}")
    try:
        # -- send --------------------------------------------------------------------------
        first_text = f"hello from the compat test {tag}"
        sent = client.beta.sessions.events.send(session.id, events=[_text_message(first_text)])
        assert sent.data is not None and len(sent.data) == 1
        echoed = sent.data[0]
        assert echoed.type == "user.message"
        assert isinstance(echoed.id, str) and echoed.id
        assert _texts(echoed) == [first_text]

        # -- list --------------------------------------------------------------------------
        deadline = time.monotonic() + WAIT_SECONDS
        listed = _find_event(client, session.id, echoed.id)
        while listed is not None and listed.processed_at is None and time.monotonic() < deadline:
            time.sleep(0.1)
            listed = _find_event(client, session.id, echoed.id)
        assert listed is not None, "sent event is missing from events.list"
        assert listed.type == "user.message"
        assert _texts(listed) == [first_text]
        assert listed.processed_at is not None, "listed event has no processed_at"

        # -- stream ------------------------------------------------------------------------
        # Paddock's stream, opened without a cursor, delivers only events appended after it
        # opened, so: open it (in a reader thread), wait until response headers arrived, then
        # send from this thread. The reader stops by itself at the marked message; the main
        # thread enforces an overall deadline so a silent server cannot hang the test.
        second_text = f"second message {tag} {uuid.uuid4().hex}"
        opened = threading.Event()
        found: "queue.Queue[Any]" = queue.Queue()
        seen_types: List[str] = []
        holder: Dict[str, Any] = {}

        def reader() -> None:
            try:
                # returns once the response headers are in; read timeout bounds each chunk wait
                stream = client.beta.sessions.events.stream(session.id, timeout=WAIT_SECONDS * 2)
                holder["stream"] = stream
                opened.set()
                with stream:
                    for event in stream:
                        seen_types.append(event.type)
                        if event.type == "user.message" and second_text in _texts(event):
                            found.put(event)
                            return
                found.put(AssertionError(f"stream ended before the message arrived; saw {seen_types}"))
            except BaseException as err:  # surfaced to the main thread
                found.put(err)
            finally:
                opened.set()

        thread = threading.Thread(target=reader, name="paddock-sse-reader", daemon=True)
        thread.start()
        try:
            assert opened.wait(WAIT_SECONDS), "events.stream did not return response headers in time"
            if "stream" not in holder:
                outcome = found.get_nowait()
                raise AssertionError(f"events.stream failed to open: {outcome!r}") from (
                    outcome if isinstance(outcome, BaseException) else None
                )
            assert holder["stream"].response.status_code == 200

            sent2 = client.beta.sessions.events.send(session.id, events=[_text_message(second_text)])
            assert sent2.data is not None and len(sent2.data) == 1
            second_id = sent2.data[0].id
            assert second_id and second_id != echoed.id

            try:
                outcome = found.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                raise AssertionError(
                    f"stream did not deliver the new user.message within {WAIT_SECONDS}s; saw {seen_types}"
                ) from None
            if isinstance(outcome, BaseException):
                raise AssertionError(f"stream reader failed: {outcome!r}") from outcome
            assert outcome.type == "user.message"
            assert outcome.id == second_id, "streamed event id differs from the id returned by send"
            assert _texts(outcome) == [second_text]
        finally:
            stream = holder.get("stream")
            if stream is not None:
                _best_effort(stream.close)
            thread.join(timeout=5)
    finally:
        _best_effort(lambda: client.beta.sessions.delete(session.id))
        _best_effort(lambda: client.beta.environments.delete(env.id))
        _best_effort(lambda: client.beta.agents.archive(agent.id))


# --------------------------------------------------------------------------------------------
# 6. the built-in agent: a tool-using turn, streamed with previews (`event_deltas`)
# --------------------------------------------------------------------------------------------

# What the stream reader puts in the queue when the stream ends.
_STREAM_END = object()


def _agent_spec() -> Dict[str, Any]:
    """The scripted model the server was configured with (set by crates/paddock-server/tests/sdk.rs)."""
    raw = os.environ.get("PADDOCK_SDK_AGENT")
    if not raw:
        pytest.skip("PADDOCK_SDK_AGENT is not set (the server needs a scripted model provider)")
    return json.loads(raw)


def _is_subsequence(wanted: List[str], seen: List[str]) -> bool:
    it = iter(seen)
    return all(any(t == w for t in it) for w in wanted)


def _streamed_turn(client: anthropic.Anthropic, session_id: str, text: str, seconds: float = TURN_SECONDS) -> List[Any]:
    """Opens the session's stream with `event_deltas` (in a reader thread) before sending
    `text`, so the whole turn is on it, and returns what the stream carried until the turn
    ended; the main thread enforces an overall deadline (keep-alives would otherwise keep a
    stalled stream's reads alive for ever)."""
    opened = threading.Event()
    items: "queue.Queue[Any]" = queue.Queue()
    holder: Dict[str, Any] = {}

    def reader() -> None:
        try:
            stream = client.beta.sessions.events.stream(session_id, event_deltas=["agent.message"], timeout=seconds)
            holder["stream"] = stream
            opened.set()
            with stream:
                for event in stream:
                    items.put(event)
            items.put(_STREAM_END)
        except BaseException as err:  # surfaced to the main thread
            items.put(err)
        finally:
            opened.set()

    thread = threading.Thread(target=reader, name="paddock-sse-turn-reader", daemon=True)
    thread.start()
    seen: List[Any] = []
    try:
        assert opened.wait(WAIT_SECONDS), "events.stream did not return response headers in time"
        if "stream" not in holder:
            outcome = items.get_nowait()
            raise AssertionError(f"events.stream failed to open: {outcome!r}") from (
                outcome if isinstance(outcome, BaseException) else None
            )
        assert holder["stream"].response.status_code == 200
        client.beta.sessions.events.send(session_id, events=[_text_message(text)])
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the turn did not end within {seconds}s; saw {[e.type for e in seen]}")
            try:
                item = items.get(timeout=left)
            except queue.Empty:
                continue
            if item is _STREAM_END:
                raise AssertionError(f"the stream ended before the turn did; saw {[e.type for e in seen]}")
            if isinstance(item, BaseException):
                raise AssertionError(f"stream reader failed: {item!r}") from item
            seen.append(item)
            if item.type == "session.status_idle" and item.stop_reason.type != "requires_action":
                break
    finally:
        stream = holder.get("stream")
        if stream is not None:
            _best_effort(stream.close)
        thread.join(timeout=5)
    return seen


def test_agent_turn_with_tool_streams_previews(client: anthropic.Anthropic, tag: str) -> None:
    spec = _agent_spec()
    # `tool_profile` is a Paddock field the SDK has no parameter for: sent with extra_body.
    agent = client.beta.agents.create(
        model=spec["model"],
        name=f"compat-agent-turn-{tag}",
        system="You are a test agent.",
        metadata={"compat_tag": tag},
        extra_body={"tool_profile": "full"},
    )
    env = _make_environment(client, tag)
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, title=f"compat-turn-{tag}")
    try:
        assert session.agent.model.id == spec["model"]

        seen = _streamed_turn(client, session.id, f"please run the command {tag}")
        types = [e.type for e in seen]
        errors = [e for e in seen if e.type == "session.error"]
        assert not errors, f"the turn failed: {errors!r}"
        assert seen[-1].stop_reason.type == "end_turn", f"turn ended with {seen[-1].stop_reason!r}; saw {types}"
        assert _is_subsequence(
            [
                "session.status_running",
                "span.model_request_start",
                "agent.message",
                "agent.tool_use",
                "span.model_request_end",
                "session.usage",
                "agent.tool_result",
                "span.model_request_start",
                "agent.message",
                "span.model_request_end",
                "session.status_idle",
            ],
            types,
        ), f"unexpected event order: {types}"

        # -- previews: event_start, then event_deltas, then the agent.message with that id ----
        messages = [(i, e) for i, e in enumerate(seen) if e.type == "agent.message"]
        assert len(messages) == 2, f"expected two agent.message events; saw {types}"
        first_at, first = messages[0]
        assert _texts(first) == [spec["first_text"]]
        starts = [(i, e) for i, e in enumerate(seen) if e.type == "event_start"]
        assert starts, f"no event_start preview arrived; saw {types}"
        first_starts = [(i, e) for i, e in starts if e.event.id == first.id]
        assert len(first_starts) == 1, f"one event_start announces {first.id}; got {starts!r}"
        start_at, start = first_starts[0]
        assert start.event.type == "agent.message"
        assert start_at < first_at, "event_start must come before the event it previews"
        deltas = [(i, e) for i, e in enumerate(seen) if e.type == "event_delta" and e.event_id == first.id]
        assert len(deltas) >= spec["min_deltas"], f"expected at least {spec['min_deltas']} event_delta previews; saw {types}"
        for i, d in deltas:
            assert start_at < i < first_at, f"event_delta at {i} is outside its preview ({start_at}..{first_at}): {types}"
            assert d.delta.type == "content_delta"
            assert d.delta.index == 0
            assert d.delta.content.type == "text"
        assert "".join(d.delta.content.text for _, d in deltas) == spec["first_text"], "the deltas add up to the message"
        # Every preview ends in a stored message with its id; every delta belongs to a started preview.
        message_ids = {e.id for _, e in messages}
        assert {e.event.id for _, e in starts} <= message_ids, "an event_start has no final agent.message"
        started = {e.event.id for _, e in starts}
        assert all(e.event_id in started for e in seen if e.type == "event_delta"), "an event_delta has no event_start"

        # -- the tool call and its result -------------------------------------------------
        tool_uses = [e for e in seen if e.type == "agent.tool_use"]
        assert len(tool_uses) == 1, f"saw {types}"
        tool_use = tool_uses[0]
        assert tool_use.name == "bash"
        assert tool_use.input == {"command": spec["command"]}
        assert tool_use.evaluated_permission == "allow"
        results = [e for e in seen if e.type == "agent.tool_result"]
        assert len(results) == 1, f"saw {types}"
        result = results[0]
        assert result.tool_use_id == tool_use.id
        assert not result.is_error, f"the tool failed: {result!r}"
        assert any(spec["tool_output"] in text for text in _texts(result)), f"tool output missing: {result!r}"

        # -- metering and the final answer ---------------------------------------------------
        usage = [(e.model_usage.input_tokens, e.model_usage.output_tokens) for e in seen if e.type == "span.model_request_end"]
        assert usage == [tuple(u) for u in spec["usage"]], f"model_usage per call: {usage}"
        assert _texts(messages[-1][1]) == [spec["final_text"]]

        # -- history holds the events, never the previews ---------------------------------------
        stored = list(client.beta.sessions.events.list(session.id, limit=100))
        stored_types = [e.type for e in stored]
        assert "event_start" not in stored_types and "event_delta" not in stored_types, stored_types
        stored_ids = {e.id for e in stored}
        assert message_ids <= stored_ids, "the previewed agent.message events are stored under the previewed ids"
        assert tool_use.id in stored_ids and result.id in stored_ids
    finally:
        _best_effort(lambda: client.beta.sessions.delete(session.id))
        _best_effort(lambda: client.beta.environments.delete(env.id))
        _best_effort(lambda: client.beta.agents.archive(agent.id))


# --------------------------------------------------------------------------------------------
# 6b. an ACP agent (Claude Code's adapter) in a runner, streamed exactly like the built-in one
# --------------------------------------------------------------------------------------------


def test_acp_agent_turn_streams_like_the_builtin_one(client: anthropic.Anthropic, tag: str) -> None:
    raw = os.environ.get("PADDOCK_SDK_ACP")
    if not raw:
        pytest.skip("PADDOCK_SDK_ACP is not set (crates/paddock-cli/tests/acp.rs runs this test)")
    spec = json.loads(raw)
    agent = client.beta.agents.create(
        model=spec["model"],
        name=f"compat-acp-{tag}",
        tools=[{"type": "agent_toolset_20260401"}],
        extra_body={"harness": spec["harness"]},
    )
    env = _make_environment(client, tag)
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    try:
        seen = _streamed_turn(client, session.id, "write the file", seconds=spec["seconds"])
        types = [e.type for e in seen]
        errors = [e for e in seen if e.type == "session.error"]
        assert not errors, f"the turn failed: {errors!r}"
        assert seen[-1].stop_reason.type == "end_turn", f"turn ended with {seen[-1].stop_reason!r}; saw {types}"
        assert _is_subsequence(
            [
                "session.status_running",
                "span.model_request_start",
                "span.model_request_end",
                "session.usage",
                "agent.tool_use",
                "agent.tool_result",
                "agent.message",
                "session.status_idle",
            ],
            types,
        ), f"unexpected event order: {types}"
        tool_uses = [e for e in seen if e.type == "agent.tool_use"]
        assert len(tool_uses) == 1, f"saw {types}"
        assert tool_uses[0].name == spec["tool"]
        assert tool_uses[0].input["file_path"] == spec["file_path"]
        assert tool_uses[0].evaluated_permission == "allow"
        results = [e for e in seen if e.type == "agent.tool_result"]
        assert len(results) == 1 and results[0].tool_use_id == tool_uses[0].id and not results[0].is_error
        messages = [(i, e) for i, e in enumerate(seen) if e.type == "agent.message"]
        assert len(messages) == 1, f"saw {types}"
        at, message = messages[0]
        assert _texts(message) == [spec["final_text"]]
        starts = [(i, e) for i, e in enumerate(seen) if e.type == "event_start" and e.event.id == message.id]
        assert len(starts) == 1, f"one event_start announces {message.id}; saw {types}"
        deltas = [(i, e) for i, e in enumerate(seen) if e.type == "event_delta" and e.event_id == message.id]
        assert len(deltas) >= 2, f"the answer streamed in pieces; saw {types}"
        assert all(starts[0][0] < i < at for i, _ in deltas)
        assert "".join(d.delta.content.text for _, d in deltas) == spec["final_text"]
        usage = [(e.model_usage.input_tokens, e.model_usage.output_tokens) for e in seen if e.type == "span.model_request_end"]
        side = tuple(spec["side_usage"])  # the agent's own side call (a session title), if it made one
        assert [u for u in usage if u != side] == [tuple(u) for u in spec["usage"]], f"metered per call: {usage}"
        assert usage.count(side) <= 1, usage
        stored = [e.type for e in client.beta.sessions.events.list(session.id, limit=200)]
        assert "event_delta" not in stored and "agent.tool_use" in stored
    finally:
        _best_effort(lambda: client.beta.sessions.delete(session.id))
        _best_effort(lambda: client.beta.environments.delete(env.id))
        _best_effort(lambda: client.beta.agents.archive(agent.id))


# --------------------------------------------------------------------------------------------
# 7. errors
# --------------------------------------------------------------------------------------------


def test_unknown_agent_is_not_found(client: anthropic.Anthropic, tag: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as err:
        client.beta.agents.retrieve(f"agent_doesnotexist{tag}")
    assert err.value.status_code == 404
    assert err.value.type == "not_found_error"  # error.type from the envelope
    assert err.value.api_message  # error.message from the envelope


def test_create_agent_without_name_is_bad_request(client: anthropic.Anthropic, tag: str) -> None:
    # `name` is a required keyword in the SDK; `anthropic.omit` leaves it out of the JSON body.
    with pytest.raises(anthropic.BadRequestError) as err:
        client.beta.agents.create(model=MODEL, name=anthropic.omit, metadata={"compat_tag": tag})  # type: ignore[arg-type]
    assert err.value.status_code == 400
    assert err.value.type == "invalid_request_error"
    assert err.value.api_message is not None and "name" in err.value.api_message, err.value.api_message
