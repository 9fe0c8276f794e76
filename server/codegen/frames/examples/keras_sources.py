"""The Keras reference examples' code, one string per example (see :mod:`deepdive.codegen.frames.examples`).

The Keras frame calls ``build_model(lr=LR, dropout=DROPOUT, decay_steps=1000)`` and expects it
compiled; each example also defines ``example_batch(batch_size=8)``.
"""

from __future__ import annotations

UNET = '''INPUT_SHAPE = (64, 64, 1)  # height, width, channels (channels-last; height and width divisible by 4)
NUM_CLASSES = 3


def conv_block(x, filters):
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    return keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE)
    e1 = conv_block(inputs, 16)
    e2 = conv_block(keras.layers.MaxPooling2D()(e1), 32)
    m = conv_block(keras.layers.MaxPooling2D()(e2), 64)
    d2 = conv_block(keras.layers.Concatenate()([keras.layers.Conv2DTranspose(32, 2, strides=2)(m), e2]), 32)
    d1 = conv_block(keras.layers.Concatenate()([keras.layers.Conv2DTranspose(16, 2, strides=2)(d2), e1]), 16)
    outputs = keras.layers.Conv2D(NUM_CLASSES, 1, activation="softmax", dtype="float32")(d1)  # (N, H, W, classes)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *INPUT_SHAPE)).astype("float32")
    return x, rng.integers(0, NUM_CLASSES, size=(batch_size, *INPUT_SHAPE[:2])).astype("int32")  # a class per pixel
'''

CNN1D = '''INPUT_SHAPE = (128, 3)  # time steps, channels (channels-last)
NUM_CLASSES = 6


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = inputs
    for filters, kernel in ((32, 7), (64, 5), (128, 3)):
        x = keras.layers.Conv1D(filters, kernel, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *INPUT_SHAPE)).astype("float32")
    return x, rng.integers(0, NUM_CLASSES, size=(batch_size,)).astype("int32")
'''

SPECTROGRAM = '''INPUT_SHAPE = (64, 128, 1)  # mel bins, frames, channels (channels-last)
NUM_CLASSES = 10


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE)  # log-mel spectrograms
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *INPUT_SHAPE)).astype("float32")
    return x, rng.integers(0, NUM_CLASSES, size=(batch_size,)).astype("int32")
'''

TAGGER = '''INPUT_SHAPE = (40,)  # tokens per sentence
SEQ_LEN = INPUT_SHAPE[0]
VOCAB_SIZE = 20000  # token id 0 is padding
NUM_CLASSES = 9  # tags


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE, dtype="int32")
    x = keras.layers.Embedding(VOCAB_SIZE, 64, mask_zero=True)(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(64, return_sequences=True))(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)  # (N, T, tags)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB_SIZE, size=(batch_size, SEQ_LEN)).astype("int32")
    return x, rng.integers(0, NUM_CLASSES, size=(batch_size, SEQ_LEN)).astype("int32")  # a tag per token
'''

MULTI_LABEL = '''INPUT_SHAPE = (64, 64, 3)  # channels-last
NUM_CLASSES = 20  # labels; any number of them per example


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = inputs
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="sigmoid", dtype="float32")(x)  # a probability per label
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy", metrics=["binary_accuracy"])
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *INPUT_SHAPE)).astype("float32")
    return x, (rng.random((batch_size, NUM_CLASSES)) < 0.2).astype("float32")  # 0/1 per label
'''

RECOMMENDER = '''NUM_USERS = 1000
NUM_ITEMS = 2000
EMBED_DIM = 32


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    users = keras.Input(shape=(), dtype="int32", name="user_ids")
    items = keras.Input(shape=(), dtype="int32", name="item_ids")
    u = keras.layers.Embedding(NUM_USERS, EMBED_DIM)(users)
    v = keras.layers.Embedding(NUM_ITEMS, EMBED_DIM)(items)
    score = keras.layers.Dot(axes=1)([u, v])  # (N, 1) click logit
    model = keras.Model([users, items], score)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    users = rng.integers(0, NUM_USERS, size=(batch_size,)).astype("int32")
    items = rng.integers(0, NUM_ITEMS, size=(batch_size,)).astype("int32")
    return (users, items), rng.integers(0, 2, size=(batch_size, 1)).astype("float32")  # clicked or not
'''

RECOMMENDER_ALL = '''NUM_USERS = 1000
NUM_ITEMS = 2000  # every item gets a score for the user
EMBED_DIM = 32


def build_model(lr=LR, dropout=DROPOUT, decay_steps=1000):
    users = keras.Input(shape=(), dtype="int32", name="user_ids")
    u = keras.layers.Embedding(NUM_USERS, EMBED_DIM)(users)
    scores = keras.layers.Dense(NUM_ITEMS)(u)  # (N, NUM_ITEMS) click logits: the user against every item
    model = keras.Model(users, scores)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def example_batch(batch_size=8):
    rng = np.random.default_rng(0)
    users = rng.integers(0, NUM_USERS, size=(batch_size,)).astype("int32")
    return users, (rng.random((batch_size, NUM_ITEMS)) < 0.01).astype("float32")  # the items each user clicked
'''
