"""Reference implementations of the attention types, for `tools/make_attention_fixtures.py`.

One module per source (`timm_refs` for timm's and other packages' modules, `official_*` for
authors' repositories brought with the library's `fetch` and given on the command line). Each
defines `REFERENCES: dict[str, Reference]`, keyed by our registry name.
"""
