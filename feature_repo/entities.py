"""The entity every feature here is keyed by."""

from feast import Entity, ValueType

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A customer, by the customer_id the events carry.",
)
