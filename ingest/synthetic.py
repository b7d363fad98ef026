"""A built-in, deterministic stream of synthetic tweets for demos and load tests.

Tweets are templates filled from a vocabulary of people, places, brands and shows. Background
mentions follow a Zipf-like popularity, and every ``burst_every`` tweets one entity "goes viral"
for ``burst_length`` tweets: most tweets in that stretch mention it, so it climbs the per-minute
trend tables and the live leaderboard. The same seed gives the same texts, ids and timestamps.

Timestamps advance ``1 / tweets_per_second`` per tweet from ``start`` (by default the moment the
stream object was created), so bursts land in a few minute-buckets, as a real one would.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

from contracts.messages import Tweet

PEOPLE = (
    "Taylor Swift", "Lionel Messi", "Barack Obama", "Elon Musk", "Serena Williams", "Beyonce",
    "Justin Bieber", "LeBron James", "Oprah Winfrey", "Bill Gates", "Adele", "Cristiano Ronaldo",
    "Kanye West", "Rihanna", "Tom Hanks", "Emma Watson", "Drake", "Lady Gaga",
)
PLACES = (
    "London", "New York", "Paris", "Tokyo", "Chicago", "Berlin", "Los Angeles", "Sydney",
    "Toronto", "Madrid", "Mumbai", "Seattle", "Boston", "Dublin", "Rome", "Texas", "Brazil",
)
BRANDS = (
    "Apple", "Google", "Starbucks", "Nike", "Netflix", "Amazon", "Microsoft", "Tesla", "Adidas",
    "Samsung", "Spotify", "Uber", "McDonalds", "Coca-Cola", "Sony", "Disney",
)
SHOWS = (
    "Game of Thrones", "Stranger Things", "The Walking Dead", "Breaking Bad", "The Office",
    "Westworld", "The Crown", "Black Mirror", "Friends", "Doctor Who", "Sherlock",
)

# Each template names the slots it fills; the label is the WNUT-style type of the slot.
_TEMPLATES = (
    "Just saw {person} at the airport in {place}!! #omg",
    "{person} is performing in {place} tonight, who's going?",
    "Can't believe {brand} just announced a new store in {place}",
    "Binge watching {show} all weekend, no regrets",
    "{person} on {show}?? best episode ever",
    "Why is my {brand} order always late... smh",
    "RT @fan_club: {person} spotted drinking {brand} coffee in {place} https://t.co/xyz",
    "Who else thinks {show} peaked in season 2? #tv",
    "{brand} vs {brand2}: which one is better for students?",
    "Traffic in {place} is insane today #commute",
    "Listening to {person} on {brand} while walking around {place}",
    "New {show} trailer dropped and {person} is in it!!!",
    "I love {place} in the spring, especially with a {brand} in hand",
    "{person} just tweeted about {brand} and the internet lost it",
    "lol my cat looks like {person}",
    "going to {place} next week, any tips? #travel",
    "Hot take: {show} is overrated",
    "{brand} stock is up again after the {place} launch",
)
_SLOT_POOLS = {"person": PEOPLE, "place": PLACES, "brand": BRANDS, "brand2": BRANDS, "show": SHOWS}
_USERS = tuple(f"user{n:03d}" for n in range(200))


@dataclass
class SyntheticStream:
    seed: int = 0
    tweets_per_second: float = 50.0
    start: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0))
    burst_every: int = 2_000
    burst_length: int = 400
    # Share of tweets inside a burst that mention the bursting entity.
    burst_share: float = 0.6

    def _pick(self, rng: random.Random, pool: tuple[str, ...]) -> str:
        # Zipf-like background popularity: the first names of each pool are mentioned most.
        weights = [1.0 / (rank + 1) for rank in range(len(pool))]
        return rng.choices(pool, weights=weights, k=1)[0]

    def burst_entity(self, index: int) -> tuple[str, str] | None:
        """The (slot, name) that is bursting at tweet ``index``, if any."""
        if self.burst_every <= 0 or index % self.burst_every >= self.burst_length:
            return None
        rng = random.Random(f"{self.seed}:burst:{index // self.burst_every}")
        slot = rng.choice(("person", "place", "brand", "show"))
        pool = _SLOT_POOLS[slot]
        # Prefer the tail of the pool so the burst is visible against the background.
        return slot, pool[rng.randrange(len(pool) // 2, len(pool))]

    def tweets(self, n: int | None = None) -> Iterator[Tweet]:
        rng = random.Random(self.seed)
        step = timedelta(seconds=1.0 / self.tweets_per_second)
        i = 0
        while n is None or i < n:
            burst = self.burst_entity(i)
            use_burst = burst is not None and rng.random() < self.burst_share
            if use_burst:
                slot = burst[0]
                candidates = [t for t in _TEMPLATES if "{" + slot + "}" in t]
                template = rng.choice(candidates)
            else:
                template = rng.choice(_TEMPLATES)
            values = {}
            for name, pool in _SLOT_POOLS.items():
                if "{" + name + "}" in template:
                    values[name] = self._pick(rng, pool)
            if use_burst:
                values[burst[0]] = burst[1]
            if "brand2" in values and values["brand2"] == values.get("brand"):
                values["brand2"] = BRANDS[(BRANDS.index(values["brand"]) + 1) % len(BRANDS)]
            yield Tweet(
                id=f"syn{self.seed}-{i:09d}",
                text=template.format(**values),
                created_at=self.start + i * step,
                user=rng.choice(_USERS),
                lang="en",
            )
            i += 1
