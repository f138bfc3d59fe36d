"""A plugin with a syntax error (a missing colon).

The fixture itself stays valid Python, as every file in the repository: it compiles its
broken body at import, which raises the same SyntaxError that importing a file with
that body raises.
"""

BODY = """
import gradcheck_cli as gc


@gc.register_layer("never_parsed")
class Never(gc.Layer)
    pass
"""

exec(compile(BODY, __file__, "exec"))
