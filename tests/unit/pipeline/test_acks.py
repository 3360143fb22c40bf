"""Acks go out in arrival order, only after every publish of a delivery is confirmed."""

from __future__ import annotations

from edge_agent.pipeline.acks import AckLedger, DeliveryRef


def ledger() -> tuple[AckLedger, list[int]]:
    sent: list[int] = []
    return AckLedger(send_ack=sent.append), sent


def test_out_of_order_completion_acks_in_arrival_order() -> None:
    acks, sent = ledger()
    acks.new_connection(1)
    first, second, third = (DeliveryRef(1, mid) for mid in (10, 11, 12))
    for ref in (first, second, third):
        acks.arrived(ref)
    acks.expect(third, 1)
    acks.expect(second, 0)  # no publishes: done as soon as the ones before it are
    acks.confirmed(third)
    assert sent == []
    acks.expect(first, 2)
    acks.confirmed(first)
    assert sent == []
    acks.confirmed(first)
    assert sent == [10, 11, 12]
    assert acks.pending() == 0


def test_reconnect_forgets_old_deliveries() -> None:
    acks, sent = ledger()
    acks.new_connection(1)
    old = DeliveryRef(1, 5)
    acks.arrived(old)
    assert acks.new_connection(2) == 1
    acks.expect(old, 1)
    acks.confirmed(old)
    fresh = DeliveryRef(2, 5)  # same packet id, different connection
    acks.arrived(fresh)
    acks.expect(fresh, 1)
    acks.confirmed(fresh)
    assert sent == [5]


def test_arrivals_of_a_stale_connection_are_ignored() -> None:
    acks, _ = ledger()
    acks.new_connection(3)
    acks.arrived(DeliveryRef(2, 1))
    assert acks.pending() == 0
