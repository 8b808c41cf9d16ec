from veracity.data import ccs_contrast_pair, chat_prompt, iti_prompt, yes_no_prompt


def test_iti_prompt():
    assert iti_prompt("Is the sky blue?", "Yes.") == "Q: Is the sky blue? A: Yes."


def test_ccs_contrast_pair():
    plus, minus = ccs_contrast_pair("is the sky blue")
    assert plus == "Question: is the sky blue?\nAnswer: Yes" and minus == "Question: is the sky blue?\nAnswer: No"
    plus, minus = ccs_contrast_pair("is the sky blue?", passage="The sky is blue.")
    assert plus == "The sky is blue.\n\nQuestion: is the sky blue?\nAnswer: Yes"
    assert minus.endswith(" No") and plus[:-4] == minus[:-3] == yes_no_prompt("is the sky blue", "The sky is blue.")
    a, b = ccs_contrast_pair("q", "p", style="llama-ccs")
    assert a == "p\n\nAfter reading this passage, I have a question: q?\n\nTrue or False: True"
    assert b.endswith("True or False: False")


class _Tok:
    def __init__(self, template, refuse_system=False):
        self.chat_template = template
        self.refuse_system = refuse_system
        self.calls = []

    def apply_chat_template(self, msgs, tokenize=True, add_generation_prompt=False):
        assert tokenize is False and add_generation_prompt is True
        if self.refuse_system and msgs[0]["role"] == "system":
            raise ValueError("System role not supported")
        self.calls.append(msgs)
        return "|".join(f"{m['role']}:{m['content']}" for m in msgs) + "|assistant:"


def test_chat_prompt():
    assert chat_prompt(_Tok(None), "Hi?") == "Q: Hi?\nA:"
    assert chat_prompt(_Tok("{{x}}"), "Hi?", system="Be honest.") == "system:Be honest.|user:Hi?|assistant:"
    assert chat_prompt(_Tok("{{x}}", refuse_system=True), "Hi?", system="S") == "user:S\n\nHi?|assistant:"


def test_chat_prompt_real_tokenizer():
    from veracity.models import byte_tokenizer

    tok = byte_tokenizer()
    out = chat_prompt(tok, "Hi?")
    assert isinstance(out, str) and "Hi?" in out
