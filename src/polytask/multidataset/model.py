"""A shared model behind per-dataset stems, for datasets whose inputs differ."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import PolytaskError, ShapeMismatchError
from ..models import MultiTaskModel


class MultiDatasetModel(MultiTaskModel):
    """Per-dataset stems in front of one multi-task model (a shared trunk and heads).

    ``forward`` takes ``{dataset: inputs}`` (what a loader with ``inputs="by_dataset"``
    yields), maps each dataset's inputs through its stem, concatenates the results in
    the given order (they must have one per-sample shape) and runs ``model`` on them;
    the outputs are aligned with the loader's concatenated targets. This is the usual
    way one network serves datasets of different input spaces (e.g. the per-language
    embeddings of multilingual models, or per-modality encoders before a shared
    trunk). A plain tensor is passed to ``model`` unchanged when there are no stems.

    Parameters: ``model``'s shared parameters are shared; a stem belongs to the tasks of
    its dataset (``task_parameters``), so balancers treat it as task-specific and it
    receives ``Σ_k w_k ∇L_k`` over its dataset's tasks.

    Extra cost per step: the stems' own forward and backward, and one concatenation.

    Args:
        model: a :class:`~polytask.models.MultiTaskModel` taking the stems' outputs.
        stems: ``{dataset: module}``; datasets left out feed ``model`` directly.
        tasks_of: ``{dataset: the tasks it labels}`` (``loader.tasks_of``).
    """

    def __init__(
        self,
        model: MultiTaskModel,
        stems: Mapping[str, nn.Module],
        tasks_of: Mapping[str, Sequence[str]],
    ) -> None:
        super().__init__(getattr(model, "tasks", None))
        if not self.task_names:
            self.task_names = tuple(model.task_names)
        self.model = model
        self.stems = nn.ModuleDict(dict(stems))
        self.tasks_of = {d: tuple(t) for d, t in tasks_of.items()}
        unknown = [d for d in self.stems if d not in self.tasks_of]
        if unknown:
            raise PolytaskError(
                f"stems given for unknown dataset(s) {unknown}; datasets: {list(self.tasks_of)}"
            )
        for dataset, tasks in self.tasks_of.items():
            bad = [t for t in tasks if t not in self.task_names]
            if bad:
                raise PolytaskError(
                    f"dataset {dataset!r} labels task(s) {bad} the model does not have; "
                    f"model tasks: {list(self.task_names)}"
                )

    def _stem(self, dataset: str, x: Tensor) -> Tensor:
        if dataset not in self.tasks_of:
            raise PolytaskError(
                f"inputs of unknown dataset {dataset!r}; datasets: {list(self.tasks_of)}"
            )
        if dataset not in self.stems:
            return x
        try:
            return self.stems[dataset](x)
        except Exception as error:  # noqa: BLE001  (re-raised, naming the dataset)
            raise PolytaskError(
                f"the stem of dataset {dataset!r} cannot take its inputs "
                f"{tuple(x.shape)}: {type(error).__name__}: {error}"
            ) from error

    def forward(self, inputs: Tensor | Mapping[str, Tensor]) -> dict[str, Tensor]:
        if isinstance(inputs, Mapping):
            parts = {d: self._stem(d, x) for d, x in inputs.items()}
            shapes = {d: tuple(h.shape[1:]) for d, h in parts.items()}
            if len(set(shapes.values())) > 1:
                raise ShapeMismatchError(
                    f"the stems' outputs differ in shape: {shapes}; every stem must map its "
                    "dataset to the shared trunk's input shape"
                )
            hidden = torch.cat(list(parts.values())) if len(parts) > 1 else next(
                iter(parts.values())
            )
        elif self.stems:
            raise PolytaskError(
                "this model has per-dataset stems: give inputs as {dataset: tensor} "
                "(a MultiDatasetLoader with inputs='by_dataset')"
            )
        else:
            hidden = inputs
        outputs = self.model(hidden)
        self.shared_representation = getattr(self.model, "shared_representation", None)
        return outputs

    def on_epoch_start(self, epoch: int) -> None:
        self.model.on_epoch_start(epoch)

    def regularization(self) -> Tensor | None:
        return self.model.regularization()

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.shared_parameters()

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        yield from self.model.task_parameters(name)
        for dataset, tasks in self.tasks_of.items():
            if name in tasks and dataset in self.stems:
                yield from self.stems[dataset].parameters()
