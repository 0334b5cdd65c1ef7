"""lamina's model files in PyTorch give lamina's predictions.

Run by ctest (test python_pytorch_model) as
    python3 check_pytorch_model.py WRITER DOC WORK_DIR
WRITER (tests/python/write_lamina_models.cpp) saves an MLP and a small CNN with
save_model, the synthetic images it predicted, and lamina's predict()
probabilities. This script then
  - runs the Python block of DOC (docs/model-files.md, "Reading lamina weights
    from Python / PyTorch") as written, with its `path` pointed at the saved
    MLP, and calls the block's predict();
  - ports the CNN by the document's layout notes (NHWC -> NCHW, the Conv2D
    kernel permuted, BatchNormalization's tensors renamed, the Dense rows after
    Flatten reordered from (H, W, C) to (C, H, W));
and checks, for each model, that PyTorch's probabilities equal lamina's within
TOLERANCE and that the predicted classes are the same.

Without torch it fails under CI (the environment variable CI set) and is
skipped otherwise (exit status 77, which ctest reports as skipped).
"""
import json
import os
import re
import subprocess
import sys

SKIP = 77

# Both sides evaluate the same float32 network with sums in different orders
# (lamina's kernels split and block their contractions differently from
# PyTorch's, and the CNN may run Winograd's transform), so they differ by
# rounding only. Reordering a sum of n terms moves it by at most about
# n * u * sum|terms|, and typically by sqrt(n) * u * sum|terms|, with
# u = 2^-24 ~ 6e-8; here sum|terms| is of order 10 (at most 16 for the MLP's
# logits, a sum of 256 terms), so a logit moves by ~1e-6 typically. A softmax
# probability moves by at most half as much as the logits do (the row sums of
# |dp_i/dz_j| are 2 p_i (1 - p_i) <= 1/2). 1e-5 is several times that, while a
# tensor ported to the wrong place moves the probabilities by 1e-3 or more (on
# these models: a bias left out 2.6e-3, the Dense rows after Flatten in
# PyTorch's order 0.99). The script prints the measured difference and each
# side's distance to the same network evaluated in float64.
TOLERANCE = 1e-5


def fail(message):
    print("python_pytorch_model: FAILED: " + message)
    sys.exit(1)


def doc_block(doc_path):
    """The ```python block of the section on reading weights from PyTorch."""
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    section = text.find("## Reading lamina weights from Python / PyTorch")
    if section < 0:
        fail(doc_path + ": no section 'Reading lamina weights from Python / PyTorch'")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, section)
    if not match:
        fail(doc_path + ": the PyTorch section has no ```python block")
    return match.group(1)


def run_doc_block(block, model_path):
    """Executes the document's code with its `path = ...` line pointed at model_path."""
    pattern = re.compile(r'^path = "[^"]*"$', re.M)
    if len(pattern.findall(block)) != 1:
        fail("the document's block must set `path = \"...\"` exactly once (the test replaces that line)")
    code = pattern.sub("path = " + repr(model_path), block)
    namespace = {"__name__": "model_files_doc"}
    exec(compile(code, "docs/model-files.md (PyTorch block)", "exec"), namespace)
    for name in ("load_lamina", "predict", "model"):
        if name not in namespace:
            fail("the document's block defines no `%s`" % name)
    return namespace


def port_cnn(torch, state):
    """The writer's CNN (Conv2D 8 3x3 same ReLU, BatchNormalization, MaxPooling2D 2,
    Flatten, Dense 10) in PyTorch, by docs/model-files.md's layout notes."""
    nn = torch.nn
    filters, height, width = 8, 14, 14  # after the 2x2 pooling of 28x28
    model = nn.Sequential(nn.Conv2d(1, filters, 3, padding=1), nn.ReLU(),
                          nn.BatchNorm2d(filters, eps=1e-3), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(filters * height * width, 10))
    dense = state["layers.4.dense.kernel"]  # (H * W * C, 10): rows in lamina's (H, W, C) order
    dense_chw = dense.reshape(height, width, filters, 10).permute(2, 0, 1, 3).reshape(-1, 10)
    with torch.no_grad():
        model[0].weight.copy_(state["layers.0.conv2d.kernel"].permute(3, 2, 0, 1))  # (KH, KW, C, F) -> (F, C, KH, KW)
        model[0].bias.copy_(state["layers.0.conv2d.bias"])
        model[2].weight.copy_(state["layers.1.batch_normalization.gamma"])
        model[2].bias.copy_(state["layers.1.batch_normalization.beta"])
        model[2].running_mean.copy_(state["layers.1.batch_normalization.moving_mean"])
        model[2].running_var.copy_(state["layers.1.batch_normalization.moving_variance"])
        model[5].weight.copy_(dense_chw.T)
        model[5].bias.copy_(state["layers.4.dense.bias"])
    model.eval()
    return model


def compare(torch, name, lamina_p, torch_p, exact_p):
    """Checks PyTorch's float32 probabilities against lamina's; returns a summary line."""
    if torch_p.shape != lamina_p.shape:
        fail("%s: PyTorch gives shape %s, lamina %s" % (name, tuple(torch_p.shape), tuple(lamina_p.shape)))
    difference = (torch_p.double() - lamina_p.double()).abs().max().item()
    lamina_error = (lamina_p.double() - exact_p).abs().max().item()
    torch_error = (torch_p.double() - exact_p).abs().max().item()
    if not difference <= TOLERANCE:
        fail("%s: PyTorch's probabilities differ from lamina's by up to %.3g (tolerance %g)"
             % (name, difference, TOLERANCE))
    # Classes: equal wherever lamina's two best probabilities are further apart
    # than the tolerance (closer ones could swap by rounding alone).
    top2 = lamina_p.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 2 * TOLERANCE
    lamina_classes = lamina_p.argmax(dim=1)
    torch_classes = torch_p.argmax(dim=1)
    mismatches = ((lamina_classes != torch_classes) & decided).nonzero().flatten().tolist()
    if mismatches:
        fail("%s: PyTorch predicts other classes than lamina for images %s" % (name, mismatches[:10]))
    undecided = int((~decided).sum().item())
    if undecided > len(lamina_p) // 20:
        fail("%s: %d of %d images have near-ties: the check of classes says little" % (name, undecided, len(lamina_p)))
    distinct = len(set(lamina_classes.tolist()))
    if distinct < 3:
        fail("%s: lamina predicts only %d distinct classes: the images do not exercise the model" % (name, distinct))
    return ("%s: %d images, %d distinct classes, max |p_torch - p_lamina| = %.2g (tolerance %g); "
            "to float64: lamina %.2g, torch %.2g; classes equal (%d near-ties not compared)"
            % (name, len(lamina_p), distinct, difference, TOLERANCE, lamina_error, torch_error, undecided))


def main():
    if len(sys.argv) != 4:
        print("usage: check_pytorch_model.py WRITER DOC WORK_DIR")
        return 2
    writer, doc_path, work = sys.argv[1:]
    try:
        import torch
    except ImportError as e:
        message = "PyTorch is not importable by %s (%s); Debian: apt install python3-torch" % (sys.executable, e)
        if os.environ.get("CI"):
            fail(message)
        print("python_pytorch_model: SKIPPED: " + message)
        return SKIP
    torch.set_num_threads(1)

    os.makedirs(work, exist_ok=True)
    subprocess.run([writer, work], check=True)
    with open(os.path.join(work, "images.u8"), "rb") as f:
        pixels = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    count = pixels.numel() // (28 * 28)
    images = pixels.reshape(count, 28, 28, 1).float() / 255  # (N, H, W, C), as the writer computed them

    def lamina_probabilities(name):
        with open(os.path.join(work, name + "_probabilities.f32"), "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(count, 10)

    # The MLP, through the document's own code.
    doc = run_doc_block(doc_block(doc_path), os.path.join(work, "mlp.safetensors"))
    mlp_p = doc["predict"](images)
    exact_mlp = doc["model"].double()
    with torch.no_grad():
        exact_p = torch.softmax(exact_mlp(images.double()), dim=1)
    lines = [compare(torch, "mlp (docs/model-files.md's code)", lamina_probabilities("mlp"), mlp_p, exact_p)]

    # The CNN, ported by the document's notes.
    state, meta = doc["load_lamina"](os.path.join(work, "cnn.safetensors"))
    layer_types = [layer["type"] for layer in json.loads(meta["architecture"])["layers"]]
    if layer_types != ["Conv2D", "BatchNormalization", "MaxPooling2D", "Flatten", "Dense"]:
        fail("cnn: unexpected architecture %s" % layer_types)
    cnn = port_cnn(torch, state)
    nchw = images.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    with torch.no_grad():
        cnn_p = torch.softmax(cnn(nchw), dim=1)
        exact_p = torch.softmax(cnn.double()(nchw.double()), dim=1)
    lines.append(compare(torch, "cnn (ported by the layout notes)", lamina_probabilities("cnn"), cnn_p, exact_p))

    for line in lines:
        print("python_pytorch_model: " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
