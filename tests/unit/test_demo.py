"""The demo inbox: deterministic, varied, a third labelled, and learnable but not trivially."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.core import demo
from tui.core.config import load_settings
from tui.core.demo import DEMO_LABELS, DemoTicket, demo_config_toml, demo_taxonomy, generate_inbox
from tui.core.demo_texts import demo_texts

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def inbox() -> list[DemoTicket]:
    return generate_inbox(3000, seed=7, now=NOW)


def test_same_seed_same_inbox() -> None:
    first = generate_inbox(200, seed=11, now=NOW)
    assert first == generate_inbox(200, seed=11, now=NOW)
    assert first != generate_inbox(200, seed=12, now=NOW)


def test_default_now_is_stable_within_a_day() -> None:
    assert generate_inbox(20) == generate_inbox(20)


def test_taxonomy_matches_labels() -> None:
    taxonomy = demo_taxonomy()
    assert 6 <= len(taxonomy) <= 10
    assert taxonomy.names == tuple(DEMO_LABELS)
    assert all(taxonomy.description(name) for name in taxonomy.names)


def test_every_label_is_used(inbox: list[DemoTicket]) -> None:
    counts = Counter(d.true_label for d in inbox)
    assert set(counts) == set(DEMO_LABELS)
    assert min(counts.values()) > 100


def test_a_third_is_labelled_with_a_little_noise(inbox: list[DemoTicket]) -> None:
    labelled = [d for d in inbox if d.agent_label is not None]
    assert len(labelled) == 1000
    wrong = sum(d.agent_label != d.true_label for d in labelled)
    assert 0.01 <= wrong / len(labelled) <= 0.06
    assert all(d.agent_label in DEMO_LABELS for d in labelled)


def test_tickets_are_well_formed(inbox: list[DemoTicket]) -> None:
    ids = [d.ticket.id for d in inbox]
    assert ids[0] == "DEMO-000001" and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"DEMO-\d{6}", i) for i in ids)
    for d in inbox:
        t = d.ticket
        assert t.text.strip() and "{" not in t.text and "}" not in t.text
        assert t.created_at is not None and NOW - timedelta(days=30) <= t.created_at <= NOW
        assert t.received_at >= t.created_at
        assert t.customer is not None and re.fullmatch(r"[a-z0-9.]+@[a-z.]+", t.customer)
        if t.subject:
            assert t.text.startswith(t.subject + "\n\n")
    assert [d.ticket.created_at for d in inbox] == sorted(d.ticket.created_at for d in inbox)


def test_variety_features_present(inbox: list[DemoTicket]) -> None:
    texts = [d.ticket.text for d in inbox]
    bodies = [d.ticket.text.removeprefix(d.ticket.subject).strip() for d in inbox]

    def share(predicate: object) -> float:
        return sum(map(predicate, texts)) / len(texts)  # type: ignore[arg-type]

    assert {d.ticket.channel for d in inbox} == {"email", "chat", "web"}
    assert share(lambda t: "Sent from my" in t or "Get Outlook" in t) > 0.02
    assert share(lambda t: " wrote:\n> " in t) > 0.03
    assert (
        share(lambda t: re.search(r"[A-Z']{2,}(?: [A-Z'#0-9?!.,]{2,}){5,}", t) is not None) > 0.02
    )
    assert share(lambda t: t.startswith(("Hi", "Hello", "Dear", "Hey", "Good"))) > 0.0
    assert share(lambda t: "--\n" in t) > 0.005  # e-mail signatures
    assert share(lambda t: re.search(r"#A\d{5}", t) is not None) > 0.1
    assert sum(len(b) < 40 for b in bodies) > 100  # "where is my order??"
    assert sum(len(b) > 600 for b in bodies) > 50  # long and rambling
    assert sum(not d.ticket.subject for d in inbox) > 300  # chats have none
    assert len(set(texts)) > 0.97 * len(texts)


def test_every_template_renders() -> None:
    rng = random.Random(0)
    slots = demo._slots(rng, "Ana", "Silva", NOW)
    texts = demo_texts()
    pools = [
        *texts.templates.values(),
        *texts.one_liners.values(),
        *texts.second_requests.values(),
        *texts.subjects.values(),
        *texts.agent_replies.values(),
        [text for _, text in texts.ambiguous],
        texts.generic_subjects,
        texts.greetings,
        texts.signoffs,
    ]
    for pool in pools:
        for template in pool:
            assert "{" not in template.format_map(slots)
    assert all(len(pool) >= 20 for pool in texts.templates.values())
    assert set(texts.templates) == set(DEMO_LABELS)
    for weights, _ in texts.ambiguous:
        assert set(weights) <= set(DEMO_LABELS) and abs(sum(weights.values()) - 1) < 1e-9


def test_typos_change_words_at_the_requested_rate() -> None:
    text = " ".join(["delivery"] * 200)
    typed = demo._typos(random.Random(1), text, 0.1)
    changed = sum(word != "delivery" for word in typed.split(" "))
    assert 5 <= changed <= 40
    assert demo._typos(random.Random(1), text, 0.0) == text


def test_demo_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(demo_config_toml(), encoding="utf-8")
    settings = load_settings(path, required=True)
    assert settings.labels == DEMO_LABELS
    assert settings.routing.backend == "specialist"
    assert settings.routing.daily_volume == 50_000
    assert settings.routing.reference_backend == "gpt-4o-mini"
    assert set(settings.backends) == {
        "specialist",
        "gpt-4o-mini",
        "claude-haiku",
        "llama3",
        "cascade",
        "embeddings",
        "local-cascade",
    }
    embeddings = settings.backend("embeddings")
    assert embeddings.type == "specialist"
    local = settings.backend("local-cascade")
    assert (local.first, local.then, local.threshold) == ("specialist", "embeddings", 0.7)
    haiku = settings.backend("claude-haiku")
    assert (haiku.type, haiku.model, haiku.api_key_env) == (
        "anthropic",
        "claude-3-5-haiku-latest",
        "ANTHROPIC_API_KEY",
    )
    assert (haiku.input_usd_per_mtok, haiku.output_usd_per_mtok) == (0.80, 4.00)
    gpt = settings.backend("gpt-4o-mini")
    assert (gpt.type, gpt.api_key_env, gpt.input_usd_per_mtok, gpt.output_usd_per_mtok) == (
        "openai",
        "OPENAI_API_KEY",
        0.15,
        0.60,
    )
    llama = settings.backend("llama3")
    assert (llama.type, llama.host, llama.model, llama.gpu_usd_per_hour) == (
        "ollama",
        "http://127.0.0.1:11434",
        "llama3.1:8b",
        1.10,
    )
    cascade = settings.backend("cascade")
    assert (cascade.first, cascade.then, cascade.threshold) == ("specialist", "gpt-4o-mini", 0.6)
    assert demo_config_toml().count("\n# ") >= 8  # every block is explained


@pytest.mark.slow
def test_tfidf_specialist_is_good_but_not_perfect(inbox: list[DemoTicket]) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    train = [d for d in inbox if d.agent_label is not None]
    test = [d for d in inbox if d.agent_label is None]
    features = make_union(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
    )
    model = make_pipeline(features, LogisticRegression(max_iter=1000, C=10))
    model.fit([d.ticket.text for d in train], [d.agent_label for d in train])
    predicted = model.predict([d.ticket.text for d in test])
    accuracy = sum(p == d.true_label for p, d in zip(predicted, test, strict=True)) / len(test)
    assert 0.75 <= accuracy <= 0.97, accuracy
