"""Session 18: how many memsets the test's small graphed step rewrites (tests/test_graph_memsets.py)."""
import torch
import fastgpt
from fastgpt.cuda_graph import GraphedTrainStep
from fastgpt.model import GPT
config = fastgpt.GPTConfig(block_size=64, vocab_size=96, n_layer=2, n_head=2, n_embd=128, dropout=0.0)
for batch in (8, 256):
    g = torch.Generator(device="cuda").manual_seed(1)
    batches = [(torch.randint(0, 96, (batch, 64), device="cuda", generator=g),
                torch.randint(0, 96, (batch, 64), device="cuda", generator=g)) for _ in range(4)]
    torch.manual_seed(0)
    model = GPT(config).cuda()
    opt = model.configure_optimizer(0.1, 1e-3, (0.9, 0.95), "cuda")
    step = GraphedTrainStep(model, opt, 1, 1.0, torch.autocast("cuda", dtype=torch.bfloat16), optimizer_writes_copies=True)
    with fastgpt.use_backend("triton"):
        for b in batches:
            step([b], 1e-3)
    print(f"batch {batch}: rewritten {step.memsets_rewritten}")
