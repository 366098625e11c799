"""Azure's published contract, as the emulator holds its exchanges to it.

``schemas/``: JSON schemas written from Azure's REST API specification for the operations the backends use (each
file names the specification file and commit it was written from). :mod:`.operations`: which definition each
request and answer of those operations must satisfy, and the api-versions ARM accepts per resource type.
:mod:`.validation`: the validators and the projection of an answer onto an api-version's schema.
:mod:`.conformance`: the middleware that applies them, and records what does not conform.
"""
