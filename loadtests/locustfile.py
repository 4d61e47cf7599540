"""Locust scenarios: the traffic each channel sends the engine, across many customers.

Run headless against any URL, for example::

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 20 -r 10 -t 20s --host http://127.0.0.1:8080

Each user class behaves like one kind of caller (web site, mobile app, call-center desktop,
event pipeline), so a run exercises the same paths, in roughly the same proportions, as
production traffic: many reads and events, fewer decisions per page, feedback only for
treatments a decision really returned. Requests are grouped by purpose in locust's statistics
(`/v1/decisions web`, `/v1/events batch(100)`, ...) rather than by URL, so the table says which
journey is slow.

Environment:
    NBA_LOAD_CUSTOMERS     customers to spread traffic over (`cust-000001` ... ; default 100000,
                           the base `nba serve --seed-customers 100000` writes).
    NBA_LOAD_THINK_SCALE   multiplies every think time (default 1.0; 0.1 makes each user ten
                           times busier without starting more users).
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

from locust import FastHttpUser, between, constant_pacing, task

CUSTOMERS = max(1, int(os.environ.get("NBA_LOAD_CUSTOMERS", "100000")))
THINK = max(0.0, float(os.environ.get("NBA_LOAD_THINK_SCALE", "1.0")))

PAGES = ("home", "search", "product", "event_list", "event_detail", "cart", "account")
SKUS = tuple(f"sku-{n:04d}" for n in range(1, 201))
COMPANIONS = ("child", "friends", "partner", "none")
DEVICES = ("ios", "android")
CALL_REASONS = ("billing", "booking_change", "complaint_follow_up", "lost_baggage", "general")


def random_customer() -> str:
    """A customer id from the seeded base; uniform, so reads hit cold and warm keys alike."""
    return f"cust-{random.randint(1, CUSTOMERS):06d}"


def new_id() -> str:
    """A fresh event or feedback id: the engine deduplicates on ids, so a reused one would be dropped."""
    return uuid.uuid4().hex


def event(customer_id: str, type_: str, channel: str | None, **attributes: Any) -> dict[str, Any]:
    """One event as a channel sends it (no `ts`: the engine stamps it on arrival)."""
    body: dict[str, Any] = {"event_id": new_id(), "customer_id": customer_id, "type": type_, "attributes": attributes}
    if channel is not None:
        body["channel"] = channel
    return body


def cart_item() -> dict[str, Any]:
    """Attributes of a cart_add: a sku, and usually a quantity and a price."""
    return {"sku": random.choice(SKUS), "qty": random.randint(1, 3), "price": round(random.uniform(5, 400), 2)}


class EngineUser(FastHttpUser):
    """Shared helpers: one customer per visit, and checked calls for each endpoint.

    A user keeps the same customer for a few actions (a visit) and then moves on, so a
    customer's events, decisions and feedback arrive together as they would from one person.
    """

    abstract = True
    visit_length = 6

    def on_start(self) -> None:
        self.customer_id = random_customer()
        self.actions_left = self.visit_length

    def next_action(self) -> str:
        """The customer for this action; a new one once the current visit is over."""
        self.actions_left -= 1
        if self.actions_left <= 0:
            self.customer_id = random_customer()
            self.actions_left = random.randint(max(1, self.visit_length // 2), self.visit_length * 2)
        return self.customer_id

    def send_events(self, events: list[dict[str, Any]], name: str) -> None:
        body: dict[str, Any] = events[0] if len(events) == 1 else {"events": events}
        with self.client.post("/v1/events", json=body, name=name, catch_response=True) as resp:
            if resp.status_code != 202:
                resp.failure(f"expected 202, got {resp.status_code}: {resp.text[:300]}")
            elif resp.json().get("accepted") != len(events):
                # Every id is fresh, so a duplicate means ids collide or events are being lost.
                resp.failure(f"expected {len(events)} accepted, got {resp.text[:300]}")

    def decide(
        self, name: str, channel: str, placement: str | None = None, context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Ask for a decision; returns the response body ({} when the call failed)."""
        body: dict[str, Any] = {"customer_id": self.customer_id, "channel": channel}
        if placement is not None:
            body["placement"] = placement
        if context:
            body["context"] = context
        with self.client.post("/v1/decisions", json=body, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"expected 200, got {resp.status_code}: {resp.text[:300]}")
                return {}
            payload: dict[str, Any] = resp.json()
            if not payload.get("decision_id") or not isinstance(payload.get("treatments"), list):
                resp.failure(f"malformed decision: {resp.text[:300]}")
                return {}
            if payload.get("degraded"):
                # A degraded answer is a 200 but means state could not be read: count it as a failure.
                resp.failure("degraded decision (state store unavailable or too slow)")
            return payload

    def feedback(self, decision: dict[str, Any], treatment_id: str, outcome: str, value: float | None = None) -> None:
        body: dict[str, Any] = {
            "feedback_id": new_id(),
            "decision_id": decision["decision_id"],
            "treatment_id": treatment_id,
            "outcome": outcome,
        }
        if value is not None:
            body["value"] = value
        with self.client.post("/v1/feedback", json=body, name=f"/v1/feedback {outcome}", catch_response=True) as resp:
            if resp.status_code != 202:
                resp.failure(f"expected 202, got {resp.status_code}: {resp.text[:300]}")
            elif resp.json().get("accepted") is not True:
                resp.failure(f"feedback not accepted: {resp.text[:300]}")

    def web_feedback(self, decision: dict[str, Any]) -> None:
        """What a page reports: an impression per treatment shown, sometimes a click, rarely a purchase."""
        treatments = decision.get("treatments") or []
        for t in treatments:
            self.feedback(decision, t["id"], "impression")
        if treatments and random.random() < 0.15:
            clicked = random.choice(treatments)["id"]
            self.feedback(decision, clicked, "click")
            if random.random() < 0.25:
                self.feedback(decision, clicked, "purchase", round(random.uniform(20, 500), 2))


class WebUser(EngineUser):
    """The web site: page views and cart adds as events, decisions for the page's slots, feedback."""

    weight = 10
    wait_time = between(0.5 * THINK, 2.0 * THINK)

    @task(6)
    def page_view(self) -> None:
        customer = self.next_action()
        self.send_events([event(customer, "page_view", "web", page=random.choice(PAGES))], "/v1/events page_view")

    @task(5)
    def home_page(self) -> None:
        self.next_action()
        decision = self.decide("/v1/decisions web", "web", context={"device": "desktop", "page": "home"})
        if decision:
            self.web_feedback(decision)

    @task(2)
    def event_tickets(self) -> None:
        self.next_action()
        companion = random.choice(("child", "friends"))
        context = {"device": "desktop", "page": "event_detail", "companion": companion, "party_size": random.randint(2, 5)}
        decision = self.decide("/v1/decisions web event_tickets", "web", "event_tickets", context)
        if decision:
            self.web_feedback(decision)

    @task(3)
    def cart_add(self) -> None:
        customer = self.next_action()
        self.send_events([event(customer, "cart_add", "web", **cart_item())], "/v1/events cart_add")

    @task(1)
    def purchase(self) -> None:
        customer = self.next_action()
        self.send_events([event(customer, "purchase", "web", amount=round(random.uniform(20, 900), 2))], "/v1/events purchase")


class MobileAppUser(EngineUser):
    """The mobile app: a decision each time it opens, page views, and now and then a delayed flight."""

    weight = 6
    wait_time = between(1.0 * THINK, 3.0 * THINK)

    def context(self) -> dict[str, Any]:
        return {"device": random.choice(DEVICES), "page": "home"}

    @task(6)
    def app_open(self) -> None:
        self.next_action()
        decision = self.decide("/v1/decisions mobile_app", "mobile_app", context=self.context())
        for t in decision.get("treatments") or []:
            self.feedback(decision, t["id"], "impression")

    @task(3)
    def page_view(self) -> None:
        customer = self.next_action()
        self.send_events([event(customer, "page_view", "mobile_app", page=random.choice(PAGES))], "/v1/events page_view")

    @task(1)
    def event_tickets(self) -> None:
        self.next_action()
        context = {**self.context(), "page": "event_detail", "companion": random.choice(COMPANIONS)}
        self.decide("/v1/decisions mobile_app event_tickets", "mobile_app", "event_tickets", context)

    @task(1)
    def flight_delayed(self) -> None:
        """The operations feed reports a delay; the customer opens the app soon after."""
        customer = self.next_action()
        delay = random.choice((15, 30, 50, 90, 180))
        self.send_events(
            [event(customer, "flight_delayed", None, delay_minutes=delay, flight=f"NB{random.randint(100, 999)}")],
            "/v1/events flight_delayed",
        )
        decision = self.decide("/v1/decisions mobile_app", "mobile_app", context=self.context())
        for t in decision.get("treatments") or []:
            self.feedback(decision, t["id"], "impression")
            if t["id"] == "apology_upgrade" and random.random() < 0.6:
                self.feedback(decision, t["id"], "accept")


class CallCenterUser(EngineUser):
    """An agent's desktop: a call starts, the screen loads the customer and one prompt, the agent reports back."""

    weight = 2
    wait_time = between(2.0 * THINK, 6.0 * THINK)
    visit_length = 1

    @task
    def handle_call(self) -> None:
        customer = self.next_action()
        self.send_events(
            [event(customer, "call_started", "call_center", reason=random.choice(CALL_REASONS))], "/v1/events call_started"
        )
        with self.client.get(f"/v1/customers/{customer}", name="/v1/customers/[id]", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"expected 200, got {resp.status_code}: {resp.text[:300]}")
        decision = self.decide(
            "/v1/decisions call_center agent_prompt", "call_center", "agent_prompt", {"reason": random.choice(CALL_REASONS)}
        )
        for t in decision.get("treatments") or []:
            self.feedback(decision, t["id"], "accept" if random.random() < 0.35 else "reject")


class EventSource(FastHttpUser):
    """A back-end pipeline (clickstream, orders, email gateway) posting events in batches of 100."""

    weight = 1
    wait_time = constant_pacing(2.0 * THINK)
    batch_size = 100

    def one_event(self) -> dict[str, Any]:
        customer = random_customer()
        roll = random.random()
        if roll < 0.55:
            return event(customer, "page_view", random.choice(("web", "mobile_app")), page=random.choice(PAGES))
        if roll < 0.85:
            return event(customer, "cart_add", random.choice(("web", "mobile_app")), **cart_item())
        if roll < 0.95:
            return event(customer, "purchase", "web", amount=round(random.uniform(20, 900), 2))
        return event(customer, "email_received", "email", subject="booking question")

    @task
    def batch(self) -> None:
        events = [self.one_event() for _ in range(self.batch_size)]
        with self.client.post("/v1/events", json={"events": events}, name="/v1/events batch(100)", catch_response=True) as resp:
            if resp.status_code != 202:
                resp.failure(f"expected 202, got {resp.status_code}: {resp.text[:300]}")
            elif resp.json().get("accepted") != self.batch_size:
                resp.failure(f"expected {self.batch_size} accepted, got {resp.text[:300]}")
