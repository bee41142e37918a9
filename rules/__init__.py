"""Pure domain rules over the records the sources return: no I/O, no GraphQL, no gateway.

The live path (resolvers/) and any projection of the records (the read model) apply these same functions,
so both judge a child alike. Inputs are plain values (record dicts, dates, strings); outputs are plain
dataclasses and enums that the GraphQL layer wraps.
"""
