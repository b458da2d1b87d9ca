"""The MultiTaskModel contract every architecture follows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from .. import params
from ..errors import PolytaskError
from ..tasks import Task, as_task_dict


class MultiTaskModel(nn.Module):
    """An ``nn.Module`` whose ``forward`` returns ``{task name: output}``.

    Subclasses say which parameters are shared by all tasks and which belong to each
    task. Architectures with one shared representation store it, after each forward,
    in ``shared_representation`` (the tensor the heads read, still in the graph) so
    that representation-gradient balancers can use it; others leave it ``None``.
    """

    task_names: tuple[str, ...] = ()
    #: whether the architecture feeds a task's head the predictions its ``inputs_from``
    #: names; the others reject such tasks rather than ignore the declaration
    supports_inputs_from: ClassVar[bool] = False
    #: constraints of the constructor's settings (:mod:`polytask.params`)
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check every construction's settings (names and declared constraints)."""
        super().__init_subclass__(**kwargs)
        params.validate_on_init(cls)

    def __init__(self, tasks: Mapping[str, Task] | Iterable[Task] | None = None) -> None:
        """``tasks`` (a sequence or name -> Task mapping) sets ``tasks`` and
        ``task_names``; subclasses that find their tasks otherwise may leave it out."""
        super().__init__()
        self.shared_representation: Tensor | None = None
        if tasks is not None:
            self.tasks = as_task_dict(tasks)
            self.task_names = tuple(self.tasks)
            self._check_inputs_from()

    def _check_inputs_from(self) -> None:
        """Reject tasks with ``inputs_from`` on an architecture that cannot honour it."""
        if self.supports_inputs_from:
            return
        readers = [n for n, t in self.tasks.items() if t.inputs_from]
        if readers:
            raise PolytaskError(
                f"task(s) {readers} declare inputs_from (another task's prediction as "
                f"input), which {type(self).__name__} does not support; use HardSharing, "
                "or drop inputs_from"
            )

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the Trainer before each epoch (schedules such as AdaShare's
        curriculum); the default does nothing."""

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters used by every task."""
        raise NotImplementedError

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        """Parameters used by task ``name`` only."""
        raise NotImplementedError

    def regularization(self) -> Tensor | None:
        """An architecture's own penalty (soft-sharing distance, AdaShare's sparsity
        and sharing losses, ...), computed after ``forward``; None when it has none.

        Balancers add it to their update when wrapped by
        :func:`polytask.balancing.penalty.attach` (see ``Regularized``).
        """
        return None

    def task_specific_parameters(self) -> dict[str, list[nn.Parameter]]:
        """``{task: [parameters of that task only]}`` for every task."""
        return {name: list(self.task_parameters(name)) for name in self.task_names}

    def _check_task(self, name: str) -> None:
        if name not in self.task_names:
            raise PolytaskError(
                f"unknown task {name!r}; this model has tasks {list(self.task_names)}"
            )
