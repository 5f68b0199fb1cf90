"""What each call cost: tokens, dollars, time, attempts; summed per bug and stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict


class Price(BaseModel):
    """Dollars per million tokens."""

    model_config = ConfigDict(frozen=True)

    input: float
    output: float


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4.1": Price(input=2.00, output=8.00),
    "gpt-4.1-mini": Price(input=0.40, output=1.60),
    "modulo-50tps": Price(input=2.00, output=8.00),
}


def cost_usd(prices: dict[str, Price], model: str, tokens_in: int, tokens_out: int) -> float:
    price = prices.get(model)
    if price is None:
        return 0.0
    return (tokens_in * price.input + tokens_out * price.output) / 1_000_000


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One gateway call, however many attempts and re-asks it took."""

    bug_id: str | None
    purpose: str
    model: str
    tokens_in: int
    tokens_out: int
    estimated_in: int
    cost_usd: float
    latency_s: float
    ttft_s: float
    attempts: int
    reasks: int
    rate_limited: int
    cache_hit: bool = False
    similarity: float | None = None
    """A semantic cache hit's cosine similarity (None: a model answer or an exact hit)."""
    tokens_saved: int = 0
    """A cache hit's tokens: what the call it reused spent."""

    @property
    def decode_tps(self) -> float:
        decode = self.latency_s - self.ttft_s
        return self.tokens_out / decode if decode > 0 else 0.0


@dataclass
class Totals:
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 0
    cache_hits: int = 0
    tokens_saved: int = 0

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.tokens_in += record.tokens_in
        self.tokens_out += record.tokens_out
        self.cost_usd += record.cost_usd
        self.latency_s += record.latency_s
        self.attempts += record.attempts
        self.cache_hits += int(record.cache_hit)
        self.tokens_saved += record.tokens_saved


@dataclass
class Ledger:
    """Every call's record, summed per bug or per purpose on demand."""

    records: list[CallRecord] = field(default_factory=list)

    def record(self, record: CallRecord) -> None:
        self.records.append(record)

    def totals(self, bug_id: str | None = None, purpose: str | None = None) -> Totals:
        total = Totals()
        for r in self.records:
            if (bug_id is None or r.bug_id == bug_id) and (purpose is None or r.purpose == purpose):
                total.add(r)
        return total

    def forget(self, bug_id: str) -> None:
        """Drop a finished bug's records so a long-running worker stays bounded."""
        self.records = [r for r in self.records if r.bug_id != bug_id]
