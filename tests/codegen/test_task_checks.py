"""The task checks of object detection, policies, recommenders and graph networks (issue #19, items 2 and 6).

Each task is judged from one batch and one forward pass (and, for a policy, the loss read from the
source): real small torch programs, written the usual ways, must pass; a plain image classifier, a
regressor, a language model, or a program with the right shapes but the wrong training must fail.
The probe runs in-process here (``judged`` from test_properties.py); the sandboxed verifier runs a
few whole programs at the end.
"""

from __future__ import annotations

import textwrap

import pytest

torch = pytest.importorskip("torch")

from deepdive.codegen.spec import Spec, Stated  # noqa: E402
from deepdive.codegen.verify import verify  # noqa: E402
from tests.codegen.test_properties import FORECAST, RESNET, SEQUENCE, UNET, judged  # noqa: E402

IMAGE_CLASSIFIER = RESNET.format(residual="pass")  # (4, 3, 16, 16) images -> (4, 10)
LANGUAGE_MODEL = SEQUENCE.format(body="self.rnn = nn.GRU(16, 16, batch_first=True)", forward="h, _ = self.rnn(h)")
REGRESSOR = FORECAST.format(horizon=12)  # (4, 48, 1) -> (4, 12) real values
SEGMENTER = UNET.format(out_in=16, merge="torch.cat([a, u], dim=1)")  # (2, 1, 16, 16) -> (2, 3, 16, 16)


def task(source: str, name: str, *more: tuple) -> tuple[str, str]:
    """``(status, detail)`` of the ``task`` property ``name`` for ``source``."""
    return judged(source, ("task", name), *more)["task"]


# ------------------------------------------------------------------------------------------------
# object detection
# ------------------------------------------------------------------------------------------------

DETECTOR = '''
class Detector(nn.Module):
    """A single-scale SSD-style head: per cell, {anchors} anchors with 4 box offsets and 3 class scores."""

    def __init__(self, classes=3, anchors={anchors}):
        super().__init__()
        self.classes = classes
        self.backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.box = nn.Conv2d(32, anchors * 4, 3, padding=1)
        self.cls = nn.Conv2d(32, anchors * classes, 3, padding=1)

    def forward(self, x):
        h = self.backbone(x)
        n = x.shape[0]
        {forward}


def build_model():
    return Detector()


def example_batch(n=2):
    images = torch.rand(n, 3, 32, 32)
    boxes = torch.rand(n, 5, 4)
    labels = torch.randint(0, 3, (n, 5))
    return images, {{"boxes": boxes, "labels": labels}}
'''
FLAT_HEADS = ("return (self.box(h).permute(0, 2, 3, 1).reshape(n, -1, 4), "
              "self.cls(h).permute(0, 2, 3, 1).reshape(n, -1, self.classes))")
RAW_MAPS = "return self.box(h), self.cls(h)"
DETR_DICT = ('return {"pred_logits": self.cls(h).flatten(2).transpose(1, 2), '
             '"pred_boxes": self.box(h).flatten(2).transpose(1, 2).sigmoid()}')


def test_an_ssd_style_detector_yields_boxes_and_class_scores_per_anchor() -> None:
    got = task(DETECTOR.format(anchors=2, forward=FLAT_HEADS), "object-detection")
    assert got == ("met", "images (2, 3, 32, 32); boxes (2, 128, 4) and class scores (2, 128, 3): 128 boxes per image, "
                          "3 class scores each; targets carry boxes (2, 5, 4)")


@pytest.mark.parametrize(("anchors", "forward", "seen"), [
    (2, RAW_MAPS, "box map (2, 8, 8, 8) (2 anchors x 4 coordinates per cell) and class map (2, 6, 8, 8) "
                  "(2 anchors x 3 class scores)"),
    (1, DETR_DICT, "boxes (2, 64, 4) and class scores (2, 64, 3): 64 boxes per image"),
], ids=["conv-maps-channels-first", "detr-style-dict"])
def test_other_usual_detection_heads_pass(anchors, forward, seen) -> None:
    status, detail = task(DETECTOR.format(anchors=anchors, forward=forward), "object-detection")
    assert status == "met" and seen in detail, detail


YOLO = '''
def build_model():
    # YOLOv1: a 4x4 grid, per cell 2 boxes (x, y, w, h, confidence) and 20 class scores.
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 30, 3, stride=4, padding=1))


def example_batch(n=2):
    return torch.rand(n, 3, 32, 32), torch.rand(n, 30, 4, 4)
'''


def test_a_packed_yolo_grid_is_judged_by_the_stated_class_count() -> None:
    assert task(YOLO, "object-detection", ("outputs", 20, "20 classes")) == (
        "met", "images (2, 3, 32, 32); one packed tensor (2, 30, 4, 4): per cell 2 boxes x 5 values and 20 class "
               "scores (20 classes as stated); targets (2, 30, 4, 4) are encoded like the output")
    status, detail = task(YOLO, "object-detection")
    assert status == "not_checked", detail
    assert "packs" in detail and "return boxes (..., 4) and class scores as separate tensors" in detail


LOCALISER = '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.box, self.cls = nn.Linear(8, 4), nn.Linear(8, 5)

    def forward(self, x):
        h = self.body(x)
        return self.box(h), self.cls(h)


def build_model():
    return Net()


def example_batch(n=4):
    return torch.rand(n, 3, 16, 16), (torch.rand(n, 4), torch.randint(0, 5, (n,)))
'''


@pytest.mark.parametrize(("source", "detail"), [
    (IMAGE_CLASSIFIER, "output (4, 10) is one vector per image, not box coordinates (..., 4) with class scores per "
                       "anchor, cell or query"),
    (LOCALISER, "boxes (4, 4) and class scores (4, 5) give one box per image (object localisation), not several "
                "boxes per image with class scores each"),
    (SEGMENTER, "output (2, 3, 16, 16) is a map at the input's size (as a segmentation gives), not boxes with class "
                "scores"),
    (LANGUAGE_MODEL, "inputs (4, 12) are not images (N, C, H, W) or (N, H, W, C), nor a list of (C, H, W) images"),
    (REGRESSOR, "inputs (4, 48, 1) are not images (N, C, H, W) or (N, H, W, C), nor a list of (C, H, W) images"),
], ids=["image-classifier", "one-box-localiser", "segmentation", "language-model", "regressor"])
def test_what_is_not_a_detector_fails_detection(source, detail) -> None:
    assert task(source, "object-detection") == ("failed", detail)


def test_a_detector_trained_on_image_labels_alone_fails() -> None:
    source = DETECTOR.format(anchors=2, forward=FLAT_HEADS).replace(
        'return images, {"boxes": boxes, "labels": labels}', "return images, torch.randint(0, 3, (n,))")
    assert task(source, "object-detection") == (
        "failed", "targets (2,) carry no boxes (no tensor with last dimension 4, none shaped like an output)")


# ------------------------------------------------------------------------------------------------
# policy
# ------------------------------------------------------------------------------------------------

POLICY = '''
class ActorCritic(nn.Module):
    def __init__(self, obs_dim=4, actions=2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(obs_dim, 32), nn.Tanh())
        self.pi, self.v = nn.Linear(32, actions), nn.Linear(32, 1)

    def forward(self, obs):
        h = self.body(obs)
        return self.pi(h), self.v(h)


def build_model():
    return ActorCritic()


def example_batch(n=4):
    return torch.randn(n, 4), torch.randint(0, 2, (n,))


def discounted(rewards, gamma=0.99):
    returns, g = [], 0.0
    for r in reversed(rewards):
        g = r + gamma * g
        returns.insert(0, g)
    return torch.tensor(returns)


def train_step(model, opt, obs, actions, rewards):
{loss}
    opt.zero_grad()
    loss.backward()
    opt.step()
'''
ACTOR_CRITIC = '''
    logits, value = model(obs)
    dist = torch.distributions.Categorical(logits=logits)
    returns = discounted(rewards)
    advantage = returns - value.squeeze(-1).detach()
    loss = -(dist.log_prob(actions) * advantage).mean() + F.mse_loss(value.squeeze(-1), returns)
'''
REINFORCE_HELPER = '''
    logits, _ = model(obs)
    chosen = F.log_softmax(logits, dim=-1).gather(1, actions[:, None]).squeeze(1)
    loss = pg_loss(chosen, discounted(rewards))


def pg_loss(log_probs, returns):
    returns = (returns - returns.mean()) / (returns.std() + 1e-8)
    return -(log_probs * returns).sum()
'''
PPO = '''
    logits, value = model(obs)
    new_logp = torch.distributions.Categorical(logits=logits).log_prob(actions)
    old_logp = new_logp.detach()
    adv = discounted(rewards) - value.squeeze(-1).detach()
    ratio = torch.exp(new_logp - old_logp)
    loss = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv).mean()
'''
BEHAVIOUR_CLONING = '''
    logits, _ = model(obs)
    loss = F.cross_entropy(logits, actions)
'''


def policy(loss: str) -> str:
    """The actor-critic program trained by ``loss`` (the body of train_step, indented, then any helpers)."""
    return POLICY.format(loss=loss.strip("\n"))


def test_an_actor_critic_trained_from_returns_is_a_policy() -> None:
    assert task(policy(ACTOR_CRITIC), "policy") == (
        "met", "observations (4, 4), action logits (4, 2) and a value (4, 1); policy-gradient loss "
               "dist.log_prob(actions) * advantage (line 37) (read from the source)")


@pytest.mark.parametrize("loss", [REINFORCE_HELPER, PPO], ids=["reinforce-log-softmax-gather", "ppo-clipped-ratio"])
def test_other_policy_gradient_losses_pass(loss) -> None:
    status, detail = task(policy(loss), "policy")
    assert status == "met" and "policy-gradient loss" in detail, detail


DQN = '''
def build_model():
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))


def example_batch(n=4):
    return torch.randn(n, 8), torch.randint(0, 4, (n,))


def train_step(q_net, target_net, opt, batch, gamma=0.99):
    obs, actions, rewards, next_obs, dones = batch
    q = q_net(obs).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        next_q = target_net(next_obs).max(dim=1).values
        target = rewards + gamma * next_q * (1 - dones)
    loss = F.smooth_l1_loss(q, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
'''


def test_a_dqn_is_a_policy_learned_by_q_learning() -> None:
    assert task(DQN, "policy") == (
        "met", "observations (4, 8), Q-values (4, 4); Q-learning: Q-values of the taken actions (line 15) and a TD "
               "target rewards + gamma * next_q * (1 - dones) (line 18) (read from the source)")


NO_REWARDS = ("but no loss uses rewards (read from the source): no log-probability of the taken actions multiplied by "
              "returns or advantages, and no Q-learning (Q-values of the taken actions and a TD target "
              "r + gamma * max Q')")


@pytest.mark.parametrize(("source", "detail"), [
    (policy(BEHAVIOUR_CLONING), f"observations (4, 4), action logits (4, 2) and a value (4, 1), {NO_REWARDS}"),
    (IMAGE_CLASSIFIER, f"observations (4, 3, 16, 16), action logits (4, 10), {NO_REWARDS}"),
    (REGRESSOR, f"observations (4, 48, 1), action logits (4, 12), {NO_REWARDS}"),
    (LANGUAGE_MODEL, "inputs (4, 12) are int values, not observations: (N, obs_dim) floats or images"),
], ids=["cross-entropy-on-labels", "image-classifier", "regressor", "language-model"])
def test_without_rewards_in_the_loss_it_is_not_a_policy(source, detail) -> None:
    assert task(source, "policy") == ("failed", detail)


def test_a_policy_output_is_action_logits_per_observation() -> None:
    source = policy(ACTOR_CRITIC).replace("return self.pi(h), self.v(h)", "return self.v(h)")
    assert task(source, "policy") == (
        "failed", "output (4, 1) is not action logits or Q-values (N, actions), nor (logits, value)")


# ------------------------------------------------------------------------------------------------
# recommendation
# ------------------------------------------------------------------------------------------------

MATRIX_FACTORISATION = '''
class MF(nn.Module):
    def __init__(self, users=100, items=50, dim=16):
        super().__init__()
        self.user, self.item = nn.Embedding(users, dim), nn.Embedding(items, dim)

    def forward(self, users, items):
        return {score}


def build_model():
    return MF()


def example_batch(n=4):
    return (torch.randint(0, 100, (n,)), torch.randint(0, 50, (n,))), torch.rand(n) * 5
'''
DOT = "(self.user(users) * self.item(items)).sum(-1)"


def test_matrix_factorisation_scores_each_user_item_pair() -> None:
    assert task(MATRIX_FACTORISATION.format(score=DOT), "recommendation") == (
        "met", "user ids (4,) and item ids (4,), 2 embedding tables (user, item), output (4,): one score per "
               "(user, item) pair, computed from both ids")


NCF = '''
class NCF(nn.Module):
    def __init__(self, users=100, items=50, dim=8):
        super().__init__()
        self.user, self.item = nn.Embedding(users, dim), nn.Embedding(items, dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, pairs):
        return self.mlp(torch.cat([self.user(pairs[:, 0]), self.item(pairs[:, 1])], dim=-1))


def build_model():
    return NCF()


def example_batch(n=4):
    pairs = torch.stack([torch.randint(0, 100, (n,)), torch.randint(0, 50, (n,))], dim=1)
    return pairs, torch.randint(0, 2, (n, 1)).float()
'''
NEXT_ITEM = '''
class Recommender(nn.Module):
    def __init__(self, users=100, items=50):
        super().__init__()
        self.user = nn.Embedding(users, 16)
        self.out = nn.Linear(16, items)

    def forward(self, users):
        return self.out(self.user(users))


def build_model():
    return Recommender()


def example_batch(n=4):
    return torch.randint(0, 100, (n,)), torch.randint(0, 50, (n,))
'''
DICT_INPUTS = MATRIX_FACTORISATION.format(score=DOT).replace(
    "return (torch.randint(0, 100, (n,)), torch.randint(0, 50, (n,))), torch.rand(n) * 5",
    'return {"users": torch.randint(0, 100, (n,)), "items": torch.randint(0, 50, (n,))}, torch.rand(n) * 5')


@pytest.mark.parametrize(("source", "seen"), [
    (NCF, "user and item ids (4, 2), 2 embedding tables (user, item), output (4, 1): one score per (user, item) pair"),
    (DICT_INPUTS, "user ids (4,) and item ids (4,)"),
    (NEXT_ITEM, "user ids (4,), 1 embedding table (user), output (4, 50): scores over all 50 items for each user"),
], ids=["ncf-pair-tensor", "dict-of-ids", "user-only-scores-over-items"])
def test_other_usual_recommenders_pass(source, seen) -> None:
    status, detail = task(source, "recommendation")
    assert status == "met" and seen in detail, detail


ONE_HOT = MATRIX_FACTORISATION.format(score="self.u(F.one_hot(users, 100).float()).sum(-1) + "
                                            "self.i(F.one_hot(items, 50).float()).sum(-1)").replace(
    "self.user, self.item = nn.Embedding(users, dim), nn.Embedding(items, dim)",
    "self.u, self.i = nn.Linear(100, dim), nn.Linear(50, dim)")


@pytest.mark.parametrize(("source", "detail"), [
    (IMAGE_CLASSIFIER, "inputs (4, 3, 16, 16) are not user and item ids: two int tensors (N,) or one (N, 2)"),
    (REGRESSOR, "inputs (4, 48, 1) are not user and item ids: two int tensors (N,) or one (N, 2)"),
    (LANGUAGE_MODEL, "inputs (4, 12) are not user and item ids: two int tensors (N,) or one (N, 2)"),
    (MATRIX_FACTORISATION.format(score="self.user(users).sum(-1)"),
     "the output does not depend on the item ids (4,) ([1]): the score ignores the items"),
    (ONE_HOT, "no embedding table (nn.Embedding, keras Embedding) among the model's 3 modules"),
], ids=["image-classifier", "regressor", "language-model", "ignores-the-items", "no-embedding-table"])
def test_what_is_not_a_recommender_fails(source, detail) -> None:
    assert task(source, "recommendation") == ("failed", detail)


# ------------------------------------------------------------------------------------------------
# graph
# ------------------------------------------------------------------------------------------------

GCN = '''
class GCN(nn.Module):
    """Two rounds of mean aggregation over incoming edges (plain torch, no torch_geometric)."""

    def __init__(self, features=8, hidden=16, classes=3):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(features, hidden), nn.Linear(hidden, classes)

    def propagate(self, x, edge_index):
        src, dst = edge_index
        summed = torch.zeros_like(x).index_add_(0, dst, x[src])
        degree = torch.zeros(x.shape[0]).index_add_(0, dst, torch.ones(dst.shape[0])).clamp(min=1)
        return {propagate}

    def forward(self, x, edge_index):
        h = F.relu(self.lin1(self.propagate(x, edge_index)))
        return self.lin2(self.propagate(h, edge_index))


def build_model():
    return GCN()


def example_batch():
    x = torch.randn(10, 8)
    edge_index = torch.stack([torch.arange(10), (torch.arange(10) + 1) % 10])
    return (x, edge_index), torch.randint(0, 3, (10,))
'''
MEAN_OF_NEIGHBOURS = "summed / degree[:, None] + x"


def test_a_gcn_in_plain_torch_classifies_nodes_from_features_and_edges() -> None:
    assert task(GCN.format(propagate=MEAN_OF_NEIGHBOURS), "graph") == (
        "met", "node features (10, 8) and edge_index (2, 10) (node ids 0..9), output (10, 3): one row per node, "
               "computed from the features and the edges")


DENSE = '''
class GraphNet(nn.Module):
    def __init__(self, features=8, classes=3):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(features, 16), nn.Linear(16, classes)

    def forward(self, x, adj):
        adj = adj + torch.eye(adj.shape[-1])
        adj = adj / adj.sum(-1, keepdim=True)
        h = F.relu(self.lin1(adj @ x))
        return {readout}


def build_model():
    return GraphNet()


def example_batch(n=6):
    adj = (torch.rand({batch}n, n) > 0.5).float()
    return (torch.randn({batch}n, 8), adj), {targets}
'''
SPARSE = '''
class SparseGCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 3)

    def forward(self, x, adj):
        return torch.sparse.mm(adj, self.lin(x))


def build_model():
    return SparseGCN()


def example_batch():
    edges = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]])
    adj = torch.sparse_coo_tensor(edges, torch.ones(5), (5, 5), check_invariants=True)
    return (torch.randn(5, 8), adj), torch.randint(0, 3, (5,))
'''


@pytest.mark.parametrize(("source", "seen"), [
    (DENSE.format(readout="self.lin2(adj @ h)", batch="", targets="torch.randint(0, 3, (n,))"),
     "node features (6, 8) and adjacency (6, 6), output (6, 3): one row per node"),
    (DENSE.format(readout="self.lin2(h.mean(dim=1))", batch="2, ", targets="torch.randint(0, 3, (2,))"),
     "node features (2, 6, 8) and adjacency (2, 6, 6) for 2 graphs, output (2, 3): one row per graph"),
    (SPARSE, "node features (5, 8) and adjacency (5, 5) (sparse), output (5, 3): one row per node"),
], ids=["dense-adjacency", "batched-graph-classification", "sparse-adjacency"])
def test_other_usual_graph_networks_pass(source, seen) -> None:
    status, detail = task(source, "graph")
    assert status == "met" and seen in detail, detail


@pytest.mark.parametrize(("source", "detail"), [
    (IMAGE_CLASSIFIER, "inputs (4, 3, 16, 16) are not node features (num_nodes, F) with an edge_index (2, E) or an "
                       "adjacency (num_nodes, num_nodes)"),
    (REGRESSOR, "inputs (4, 48, 1) are not node features (num_nodes, F) with an edge_index (2, E) or an "
                "adjacency (num_nodes, num_nodes)"),
    (LANGUAGE_MODEL, "inputs (4, 12) are not node features (num_nodes, F) with an edge_index (2, E) or an "
                     "adjacency (num_nodes, num_nodes)"),
    (GCN.format(propagate="x"), "the output does not depend on the edge_index (2, 10) ([1]): no message passing over "
                                "the graph"),
], ids=["cnn-on-images", "regressor", "language-model", "mlp-ignoring-the-edges"])
def test_what_is_not_a_graph_network_fails(source, detail) -> None:
    assert task(source, "graph") == ("failed", detail)


# ------------------------------------------------------------------------------------------------
# the sandboxed verifier, end to end
# ------------------------------------------------------------------------------------------------

MAIN = '''

def main():
    if "--smoke" in sys.argv:
{smoke}
        print("smoke ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def whole(source: str, smoke: str, header: str = "import sys\n\nimport torch\nimport torch.nn.functional as F\n"
          "from torch import nn\n") -> str:
    return header + textwrap.dedent(source) + MAIN.format(smoke=textwrap.indent(textwrap.dedent(smoke).strip(), " " * 8))


POLICY_SMOKE = '''
model = build_model()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
obs, actions = example_batch()
train_step(model, opt, obs, actions, [1.0, 0.0, 1.0, 1.0])
'''
GRAPH_SMOKE = '''
model = build_model()
(x, edge_index), y = example_batch()
F.cross_entropy(model(x, edge_index), y).backward()
'''


def spec(*stated: tuple) -> Spec:
    return Spec(prompt="test", stated=[Stated(*s) for s in stated])


@pytest.mark.slow
def test_the_verifier_verifies_a_policy_and_a_gnn_and_refuses_behaviour_cloning() -> None:
    good = verify(whole(policy(ACTOR_CRITIC), POLICY_SMOKE), spec=spec(("task", "policy", "a policy network")))
    assert good.verified, (good.message, good.stderr_tail)
    assert good.properties[0].detail.startswith("observations (4, 4), action logits (4, 2) and a value (4, 1); "
                                                "policy-gradient loss dist.log_prob(actions) * advantage")
    cloning = verify(whole(policy(BEHAVIOUR_CLONING), POLICY_SMOKE), spec=spec(("task", "policy", "a policy network")))
    assert not cloning.verified and cloning.properties[0].status == "failed"
    assert cloning.message.startswith("verification failed: 1 stated property not met: task policy — ")
    gnn = verify(whole(GCN.format(propagate=MEAN_OF_NEIGHBOURS), GRAPH_SMOKE), spec=spec(("task", "graph", "a GNN")))
    assert gnn.verified, (gnn.message, gnn.stderr_tail)
    assert gnn.properties[0].detail.endswith("one row per node, computed from the features and the edges")


KERAS_RECOMMENDER = '''
import sys

import numpy as np
import tensorflow as tf
from tensorflow import keras


def build_model(users=100, items=50, dim=8):
    user, item = keras.Input((1,), dtype="int32"), keras.Input((1,), dtype="int32")
    u = keras.layers.Flatten()(keras.layers.Embedding(users, dim)(user))
    i = keras.layers.Flatten()(keras.layers.Embedding(items, dim)(item))
    model = keras.Model([user, item], keras.layers.Dot(axes=1)([u, i]))
    model.compile(optimizer="adam", loss="mse")
    return model


def example_batch(n=4):
    users = np.random.randint(0, 100, (n, 1)).astype("int32")
    items = np.random.randint(0, 50, (n, 1)).astype("int32")
    return (users, items), np.random.rand(n, 1).astype("float32") * 5


def main():
    if "--smoke" in sys.argv:
        (users, items), ratings = example_batch()
        build_model().fit([users, items], ratings, epochs=1, verbose=0)
        print("smoke ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


@pytest.mark.slow
def test_a_keras_recommender_is_checked_and_says_what_keras_cannot_show() -> None:
    pytest.importorskip("tensorflow")
    result = verify(KERAS_RECOMMENDER, spec=spec(("task", "recommendation", "a recommender")), timeout_s=240)
    assert result.verified, (result.message, result.stderr_tail)
    assert result.properties[0].detail == (
        "user ids (4, 1) and item ids (4, 1), 2 embedding tables (embedding, embedding_1), output (4, 1): one score "
        "per (user, item) pair (Keras: that the score depends on both ids is not checked)")


def test_the_stated_class_count_of_a_detector_and_a_gnn_is_read_from_their_class_scores() -> None:
    detector = DETECTOR.format(anchors=2, forward=FLAT_HEADS)
    detection = ("task", "object-detection")
    assert judged(detector, detection, ("outputs", 3))["outputs"] == ("met", "class scores (2, 128, 3): 3 per box")
    assert judged(detector, detection, ("outputs", 5))["outputs"][0] == "failed"  # the boxes' 4 is never taken for the classes
    gcn = GCN.format(propagate=MEAN_OF_NEIGHBOURS)
    assert judged(gcn, ("task", "graph"), ("outputs", 3))["outputs"][0] == "met"


def test_a_packed_detection_output_holds_the_stated_class_count_per_cell() -> None:
    status, detail = judged(YOLO, ("task", "object-detection"), ("outputs", 20))["outputs"]
    assert status == "met" and "20 class scores" in detail, detail
    assert judged(YOLO, ("task", "object-detection"), ("outputs", 7))["outputs"][0] == "failed"
