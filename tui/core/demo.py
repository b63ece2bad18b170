"""The offline demo: a generated e-commerce support inbox, its taxonomy and its config.

It is the first thing a user sees, so the tickets read like a real inbox: many templates per
department, greetings and signatures, quoted replies, typos, angry capitals, one-liners and
rambling letters, requests that touch two departments, a few genuinely ambiguous ones, and
agents who sometimes mislabel. That keeps a specialist trained on the labelled part good but
visibly imperfect, which is the trade-off the app exists to show. Only `random.Random(seed)`
is used, so one seed always gives the same inbox.

This module holds the generator's logic; the words it draws from are text files in
`tui/core/demo_texts/`, which a writer can edit without touching Python.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tui.core.demo_texts import demo_config_template, demo_texts
from tui.core.models import Label, Taxonomy, Ticket

STORE = "Brightcart"

DEMO_LABELS: dict[str, str] = {
    "billing": "Charges, invoices, payment methods, double charges, promo codes and price "
    "adjustments",
    "shipping": "Delivery status, tracking, delays, lost, stolen or damaged parcels, carriers "
    "and customs",
    "returns_refunds": "Returning or exchanging received items, return labels, refunds for "
    "returned goods",
    "order_changes": "Cancelling or changing an order before it ships: address, size, items, "
    "quantity, delivery options",
    "account_access": "Login, password resets, two-factor codes, locked or hacked accounts, "
    "account e-mail and deletion",
    "product_question": "Questions before buying: sizing, compatibility, stock, materials, "
    "care, warranty",
    "technical_issue": "Website or app bugs: checkout errors, crashes, pages or buttons that "
    "don't work",
    "complaints": "Dissatisfaction with service, staff or quality; escalations and formal "
    "complaints",
}
"""Eight departments of an online shop, with the descriptions the LLM prompts use."""

_WEIGHTS = {
    "billing": 13,
    "shipping": 22,
    "returns_refunds": 17,
    "order_changes": 12,
    "account_access": 9,
    "product_question": 10,
    "technical_issue": 9,
    "complaints": 8,
}
"""Shares of the inbox: where-is-my-order dominates real e-commerce queues."""

_CONFUSIONS = {
    "billing": ("returns_refunds", "technical_issue", "order_changes"),
    "shipping": ("returns_refunds", "complaints", "order_changes"),
    "returns_refunds": ("billing", "shipping", "order_changes"),
    "order_changes": ("shipping", "returns_refunds", "billing"),
    "account_access": ("technical_issue", "billing"),
    "product_question": ("returns_refunds", "order_changes", "technical_issue"),
    "technical_issue": ("account_access", "billing"),
    "complaints": ("shipping", "returns_refunds", "billing"),
}
"""The labels a hurried agent picks instead of the right one."""

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_KEYBOARD_NEIGHBOURS = {
    "a": "sq", "e": "wr", "i": "uo", "o": "ip", "n": "bm", "r": "et", "s": "ad", "t": "ry",
    "l": "k", "d": "sf", "h": "gj", "u": "yi", "c": "xv", "m": "n", "g": "fh", "y": "tu",
}  # fmt: skip


_P_AMBIGUOUS = 0.15
"""Share of genuinely ambiguous tickets; with mixed requests they set the specialist's ceiling."""
_P_SHORT = _P_AMBIGUOUS + 0.09
_P_LONG = _P_SHORT + 0.07
_P_MIXED = 0.25


@dataclass(frozen=True)
class DemoTicket:
    """A generated ticket with the label it truly belongs to and what an agent recorded."""

    ticket: Ticket
    true_label: str
    """The department the ticket really belongs to: the yardstick for accuracy."""
    agent_label: str | None
    """The label an agent gave it (None when unlabelled); wrong about 3% of the time."""


def demo_taxonomy() -> Taxonomy:
    """The demo's taxonomy, in DEMO_LABELS order, with descriptions for the LLM prompts."""
    return Taxonomy(labels=tuple(Label(name=k, description=v) for k, v in DEMO_LABELS.items()))


def generate_inbox(
    n: int = 3000,
    *,
    seed: int = 7,
    labelled_fraction: float = 1 / 3,
    now: datetime | None = None,
) -> list[DemoTicket]:
    """Generate a realistic support inbox, a fraction of it labelled by agents.

    Args:
        n: Number of tickets.
        seed: Same seed (and `now`) gives the same inbox, ticket for ticket.
        labelled_fraction: Share of tickets that carry an agent label.
        now: End of the 30-day window the tickets were sent in; today at 00:00 UTC when None,
            so the inbox looks recent yet stays identical within a day.

    Returns:
        The tickets, oldest first, with ids DEMO-000001 onwards.
    """
    if n < 0 or not 0.0 <= labelled_fraction <= 1.0:
        raise ValueError("n must be >= 0 and labelled_fraction within [0, 1]")
    rng = random.Random(seed)
    end = now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    offsets = sorted((rng.uniform(0, 30 * 86400) for _ in range(n)), reverse=True)
    labelled = set(rng.sample(range(n), round(n * labelled_fraction)))
    labels = list(_WEIGHTS)
    weights = list(_WEIGHTS.values())
    inbox: list[DemoTicket] = []
    for index in range(n):
        created = end - timedelta(seconds=round(offsets[index]))
        true_label, subject, body, channel, customer = _compose(
            rng, rng.choices(labels, weights)[0], created
        )
        agent_label: str | None = None
        if index in labelled:
            agent_label = true_label
            if rng.random() < 0.03:
                agent_label = rng.choice(_CONFUSIONS[true_label])
        text = f"{subject}\n\n{body}" if subject else body
        ticket = Ticket(
            id=f"DEMO-{index + 1:06d}",
            text=text,
            subject=subject,
            customer=customer,
            channel=channel,
            created_at=created,
            received_at=created + timedelta(seconds=rng.randint(2, 90)),
            meta={"source": "demo"},
        )
        inbox.append(DemoTicket(ticket=ticket, true_label=true_label, agent_label=agent_label))
    return inbox


def _compose(rng: random.Random, label: str, created: datetime) -> tuple[str, str, str, str, str]:
    """One ticket: (true label, subject, body, channel, customer e-mail)."""
    texts = demo_texts()
    channel = rng.choices(("email", "chat", "web"), (55, 25, 20))[0]
    first, last = rng.choice(texts.first_names), rng.choice(texts.last_names)
    slots = _slots(rng, first, last, created)
    kind = rng.random()
    other = rng.choice([name for name in DEMO_LABELS if name != label])
    # What the subject line and any quoted reply are about: usually the ticket's own topic,
    # but an ambiguous ticket must not give its label away through them.
    topic = label if rng.random() < 0.88 else other
    paragraphs: list[str] = []
    if kind < _P_AMBIGUOUS:
        weights, template = rng.choice(texts.ambiguous)
        label = rng.choices(list(weights), list(weights.values()))[0]
        topic = rng.choice(list(weights))
        paragraphs.append(template)
    elif kind < _P_SHORT:
        paragraphs.append(rng.choice(texts.one_liners[label]))
    else:
        main = rng.choice(texts.templates[label])
        if kind < _P_LONG:
            extra = rng.sample(texts.filler, rng.randint(3, 7))
            second = rng.choice(texts.templates[label])
            paragraphs += [extra[0], main, " ".join(extra[1:-1]), second, extra[-1]]
        else:
            paragraphs.append(main)
        if rng.random() < _P_MIXED:
            paragraphs.append(rng.choice(texts.second_requests[other]))
    short = _P_AMBIGUOUS <= kind < _P_SHORT
    body = _render(paragraphs, slots)
    if rng.random() < 0.05:
        body = f"{body.upper()} {rng.choice(texts.angry)}"
    elif (channel == "chat" or short) and rng.random() < 0.5:
        body = body.lower()
    typo_rate = rng.choice((0.0, 0.0, 0.0, 0.02, 0.05, 0.1))
    if typo_rate:
        body = _typos(rng, body, typo_rate)
    if channel == "chat" or short:
        subject = "" if channel == "chat" else _subject(rng, topic, channel, slots)
        return label, subject, body, channel, slots["email"]
    parts = []
    if rng.random() < 0.65:
        parts.append(_render([rng.choice(texts.greetings)], slots))
    parts.append(body)
    if rng.random() < 0.6:
        parts.append(_render([rng.choice(texts.signoffs).replace("|", "\n")], slots))
    if channel == "email":
        if rng.random() < 0.08:
            role = rng.choice(texts.signature_roles)
            area, prefix, line = rng.randint(200, 989), rng.randint(200, 999), rng.randint(0, 9999)
            phone = f"+1 ({area}) {prefix}-{line:04d}"
            parts.append(f"--\n{first} {last}\n{role} | {slots['company']}\n{phone}")
        if rng.random() < 0.12:
            parts.append(rng.choice(texts.mobile_footers))
        if rng.random() < 0.13:
            quote_topic = topic if rng.random() < 0.6 else other
            parts.append(_quoted(rng, quote_topic, slots, created))
    return label, _subject(rng, topic, channel, slots), "\n\n".join(parts), channel, slots["email"]


def _subject(rng: random.Random, label: str, channel: str, slots: dict[str, str]) -> str:
    texts = demo_texts()
    if channel == "web":
        topic = rng.choice(texts.form_topics)
        return f"Contact form: {topic}"
    roll = rng.random()
    if roll < 0.08:
        return ""
    pool = texts.generic_subjects if roll < 0.3 else texts.subjects[label]
    return _render([rng.choice(pool)], slots)


def _quoted(rng: random.Random, label: str, slots: dict[str, str], created: datetime) -> str:
    """A previous agent reply quoted under the customer's answer, as mail clients do."""
    texts = demo_texts()
    sent = created - timedelta(days=rng.randint(1, 6), minutes=rng.randint(0, 600))
    header = (
        f"On {_WEEKDAYS[sent.weekday()]}, {sent.day} {_MONTHS[sent.month - 1]} {sent.year} at "
        f"{sent.hour}:{sent.minute:02d}, {STORE} Support <support@{STORE.lower()}.com> wrote:"
    )
    lines = [
        f"Hi {slots['first']},",
        "",
        _render([rng.choice(texts.agent_replies[label] + texts.generic_agent_replies)], slots),
        "",
        "Kind regards,",
        f"{rng.choice(texts.agents)}",
        f"{STORE} Customer Care",
    ]
    return header + "\n" + "\n".join(f"> {line}".rstrip() for line in lines)


def _render(paragraphs: Sequence[str], slots: dict[str, str]) -> str:
    return "\n\n".join(p.format_map(slots) for p in paragraphs)


def _typos(rng: random.Random, text: str, rate: float) -> str:
    """Swap, drop, double or fat-finger letters in a share of the longer words."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) < 4 or not word.isalpha() or rng.random() >= rate:
            continue
        pos = rng.randrange(1, len(word) - 1)
        op = rng.random()
        if op < 0.35:
            word = word[:pos] + word[pos + 1] + word[pos] + word[pos + 2 :]
        elif op < 0.65:
            word = word[:pos] + word[pos + 1 :]
        elif op < 0.8:
            word = word[:pos] + word[pos] + word[pos:]
        else:
            near = _KEYBOARD_NEIGHBOURS.get(word[pos].lower())
            if near:
                word = word[:pos] + rng.choice(near) + word[pos + 1 :]
        words[i] = word
    return " ".join(words)


def _slots(rng: random.Random, first: str, last: str, created: datetime) -> dict[str, str]:
    """Values for every {placeholder} the templates use, drawn once per ticket."""
    texts = demo_texts()

    def order() -> str:
        style = rng.random()
        if style < 0.55:
            return f"#A{rng.randint(10000, 99999)}"
        if style < 0.75:
            return f"A{rng.randint(10000, 99999)}"
        if style < 0.9:
            return f"#{rng.randint(1000000, 1999999)}"
        return f"no. {rng.randint(10000000, 99999999)}"

    symbol = rng.choices(("$", "£", "€"), (70, 15, 15))[0]

    def amount() -> str:
        return f"{symbol}{rng.choice((rng.uniform(4, 60), rng.uniform(20, 400))):.2f}"

    def date() -> str:
        day = created + timedelta(days=rng.randint(-14, 10))
        style = rng.random()
        if style < 0.5:
            return f"{_MONTH_NAMES[day.month - 1]} {day.day}"
        if style < 0.75:
            return f"{day.month}/{day.day}"
        return _DAY_NAMES[day.weekday()]

    number = rng.randint(1, 99)
    handle = rng.choice(
        (f"{first}.{last}", f"{first}{last[0]}", f"{first[0]}{last}", f"{first}{number}")
    )
    clean = "".join(c for c in handle.lower() if c.isalnum() or c == ".")
    mail = f"{clean}@{rng.choice(texts.mail_domains)}"
    size, size2 = rng.sample(texts.sizes, 2)
    product, product2 = rng.sample(texts.products, 2)
    apt = rng.randint(1, 40)
    return {
        "order": order(),
        "order2": order(),
        "product": product,
        "product2": product2,
        "amount": amount(),
        "amount2": amount(),
        "date": date(),
        "date2": date(),
        "carrier": rng.choice(texts.carriers),
        "tracking": f"1Z{rng.randint(100, 999)}E{rng.randint(10**9, 10**10 - 1)}",
        "city": rng.choice(texts.cities),
        "country": rng.choice(texts.countries),
        "color": rng.choice(texts.colours),
        "size": size,
        "size2": size2,
        "device": rng.choice(texts.devices),
        "browser": rng.choice(texts.browsers),
        "version": f"{rng.randint(4, 6)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}",
        "code": rng.choice(texts.promo_codes),
        "membership": rng.choice(texts.memberships),
        "agent": rng.choice(texts.agents),
        "company": rng.choice(texts.companies),
        "address": f"{rng.randint(2, 250)} {rng.choice(texts.streets)}, {rng.choice(texts.cities)}",
        "apt": str(apt),
        "apt2": str(apt + rng.randint(1, 9)),
        "last4": f"{rng.randint(0, 9999):04d}",
        "email": mail,
        "email_old": f"{clean}@{rng.choice(texts.mail_domains)}",
        "days": str(rng.randint(3, 21)),
        "hours": str(rng.randint(1, 6)),
        "qty": str(rng.randint(2, 4)),
        "n": str(rng.randint(3, 7)),
        "years": str(rng.randint(2, 12)),
        "first": first,
        "last": last,
        "name": f"{first} {last}",
        "store": STORE,
    }


def demo_config_toml() -> str:
    """A complete config for the demo, commented so it doubles as a template to copy.

    The commented text is `demo_texts/config.toml`; its `{labels}` line becomes DEMO_LABELS,
    so the taxonomy is written in one place only.
    """
    labels = "\n".join(f"{name} = {json.dumps(desc)}" for name, desc in DEMO_LABELS.items())
    return demo_config_template().replace("{labels}", labels)
