"""The dataset audit: conditions and protected attributes of CVAT exports.

Annotators label, next to the target labels, *additional labels* on a subset
of the data: conditions (lighting, weather, distance...: possible shortcuts)
and protected attributes (apparent gender, skin tone...). In CVAT each is a
`radio` attribute of every target label, valued `unlabeled` until someone
audits it. This package reads CVAT exports (`exports`, `cvat_xml`, `coco`),
or fetches one from a workspace (`cvat_client`), builds items (`dataset`) and
answers four questions, one subcommand each (`cli`):

- `sample`: which items to send for the additional labels (`sampling`);
- `report`: is a label associated with a condition or a group (`report`, `stats`);
- `split`: a validation set balanced over labels and attributes (`balance`);
- `errors`: does the model err more for some groups; loss weights (`model_errors`).

It runs as `python -m audit` with its own requirements (audit/requirements.txt),
apart from the Pulumi program's.
"""
