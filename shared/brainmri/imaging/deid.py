"""DICOM de-identification on ingest (PS3.15 Annex E, Basic Application Level Confidentiality
Profile), done as an allow-list.

Instead of walking Table E.1-1 and applying remove/zero/dummy/clean actions attribute by
attribute (and missing whatever a vendor put elsewhere), the stored object is *rebuilt* from
the attributes inference needs - pixels, geometry, photometric interpretation, rescale, VOI -
so every Table E.1-1 attribute with an X/Z/D/C action is absent by construction, private tags
included. Attributes with the U action (instance, series, study and frame-of-reference UIDs)
are replaced by ``2.25.`` UIDs derived from the original with a per-upload random salt: the
mapping is consistent inside one upload (a study's slices stay one series, in order) and
unlinkable across uploads. The 128-byte preamble is zeroed (CVE-2019-11687 polyglots),
PatientIdentityRemoved is YES and the De-identification Method Code Sequence names profile
113100. Objects that declare burned-in annotation are refused: text in the pixels cannot be
removed by editing attributes.

The allow-list holds at every depth: a kept sequence is never copied whole, each of its items
is rebuilt from that sequence's own allow-list (:data:`KEEP_IN_ITEMS`), because vendors put
patient names, IDs and private tags inside functional groups and LUT items too. An element
whose encoding contradicts its keyword (a kept value attribute sent as a sequence, a kept
sequence sent as a value, anything left as UN bytes) is dropped, since its content cannot be
vetted.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from collections.abc import Iterable
from itertools import product

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import BytesLengthException
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
from pydicom.valuerep import VR

from brainmri.errors import InputError, InvalidDicomError

#: Attributes copied to the stored object (everything inference and display need).
KEEP = (
    "SOPClassUID",
    "Modality",
    "ImageType",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "NumberOfFrames",
    "PixelPaddingValue",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
    "ModalityLUTSequence",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SliceLocation",
    "PatientOrientation",
    "InstanceNumber",
    "AcquisitionNumber",
    "LossyImageCompression",
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
)
#: Enhanced multi-frame sequences rebuilt from :data:`KEEP_IN_FUNCTIONAL_GROUPS`.
FUNCTIONAL_GROUPS = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")
#: Functional-group macros that carry per-frame geometry and pixel transforms.
KEEP_IN_FUNCTIONAL_GROUPS = (
    "PlanePositionSequence",
    "PlaneOrientationSequence",
    "PixelMeasuresSequence",
    "PixelValueTransformationSequence",
    "FrameVOILUTSequence",
)
#: The allow-list of every kept sequence's items: what the decoder reads (geometry, rescale,
#: windowing, LUT descriptor and data) and nothing else. Free-text members such as
#: LUTExplanation or WindowCenterWidthExplanation are left out on purpose. A sequence keyword
#: kept anywhere must be a key here, or it is not copied at all.
KEEP_IN_ITEMS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(FUNCTIONAL_GROUPS, KEEP_IN_FUNCTIONAL_GROUPS),
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
    "PixelValueTransformationSequence": ("RescaleIntercept", "RescaleSlope", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
    "VOILUTSequence": ("LUTDescriptor", "LUTData"),
    "ModalityLUTSequence": ("LUTDescriptor", "ModalityLUTType", "LUTData"),
}
#: What a kept string value may look like, by VR (PS3.5 6.2): decimal and integer strings,
#: code strings, UIDs. ``LO`` only carries defined terms here (RescaleType, ModalityLUTType).
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|")
_CODE = re.compile(r"[A-Z0-9 _]{0,64}")
_STRING_VR_PATTERNS: dict[str, re.Pattern[str]] = {
    VR.DS: _NUMBER,
    VR.IS: _NUMBER,
    VR.CS: _CODE,
    VR.LO: _CODE,
    VR.UI: re.compile(r"[0-9.]{0,64}"),
}
#: Kept code strings whose values the standard enumerates (PS3.3): a value outside the list
#: is dropped. ``[A-Z0-9 _]`` alone lets an upper-case name ("JOHN DOE") through, and some of
#: these values are returned to clients (modality, photometric interpretation).
_MODALITY_CODES = (  # PS3.3 C.7.3.1.1.1 defined terms
    "ANN AR ASMT AU BDUS BI BMD CFM CR CT CTPROTOCOL DG DMS DOC DX ECG EEG EMG EOG EPS ES FID "
    "GM HC HD IO IOL IVOCT IVUS KER KO LEN LS M3D MG MR NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV "
    "OSS OT PA PLAN POS PR PT PX REG RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD "
    "RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA XAPROTOCOL XC"
)
_RESCALE_TYPES = frozenset({"OD", "HU", "US", "MGML", "Z_EFF", "ED", "EDW", "HU_MOD", "PCT"})
ENUMERATED_VALUES: dict[str, frozenset[str]] = {
    "Modality": frozenset(_MODALITY_CODES.split()),
    "PhotometricInterpretation": frozenset(
        {
            "MONOCHROME1",
            "MONOCHROME2",
            "PALETTE COLOR",
            "RGB",
            "HSV",
            "ARGB",
            "CMYK",
            "YBR_FULL",
            "YBR_FULL_422",
            "YBR_PARTIAL_422",
            "YBR_PARTIAL_420",
            "YBR_ICT",
            "YBR_RCT",
            "XYZ",
        }
    ),
    "RescaleType": _RESCALE_TYPES,
    "ModalityLUTType": _RESCALE_TYPES,
    "VOILUTFunction": frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"}),
    "LossyImageCompression": frozenset({"00", "01"}),
    # One to three of the letters A P R L H F per value (PS3.3 C.7.6.1.1.1).
    "PatientOrientation": frozenset(
        "".join(letters) for size in (1, 2, 3) for letters in product("APRLHF", repeat=size)
    ),
}
#: ImageType: values 1 and 2 are enumerated; values 3 on are vendor-defined free codes, which
#: nothing here reads and nothing can vet, so they are not kept.
IMAGE_TYPE_VALUES = (  # MIXED: enhanced multi-frame objects (PS3.3 C.8.16.1)
    frozenset({"ORIGINAL", "DERIVED", "MIXED"}),
    frozenset({"PRIMARY", "SECONDARY", "MIXED"}),
)
#: PS3.15 Table E.1-1 actions "U": replaced consistently within an upload.
REPLACED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
DEID_METHOD = "brainmri allow-list, PS3.15 E.1 Basic Profile"

#: Identifying attributes of PS3.15 Table E.1-1 (Basic Profile) that matter for MR objects.
#: Used by tests and audits: none of them may survive de-identification.
BASIC_PROFILE_ATTRIBUTES = (
    "AccessionNumber",
    "AcquisitionComments",
    "AcquisitionDate",
    "AcquisitionDateTime",
    "AcquisitionTime",
    "AdditionalPatientHistory",
    "AdmissionID",
    "AdmittingDiagnosesDescription",
    "Allergies",
    "BranchOfService",
    "ConcatenationUID",
    "ConsultingPhysicianName",
    "ContentDate",
    "ContentTime",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "DerivationDescription",
    "DeviceSerialNumber",
    "DeviceUID",
    "DimensionOrganizationUID",
    "EthnicGroup",
    "GantryID",
    "ImageComments",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "InstanceCreatorUID",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "InterpretationText",
    "IrradiationEventUID",
    "IssuerOfPatientID",
    "LastMenstrualDate",
    "MedicalAlerts",
    "MedicalRecordLocator",
    "MilitaryRank",
    "NameOfPhysiciansReadingStudy",
    "Occupation",
    "OperatorsName",
    "OrderCallbackPhoneNumber",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientAge",
    "PatientBirthDate",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientID",
    "PatientInstitutionResidence",
    "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName",
    "PatientName",
    "PatientReligiousPreference",
    "PatientSex",
    "PatientSize",
    "PatientState",
    "PatientTelephoneNumbers",
    "PatientTransportArrangements",
    "PatientWeight",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformingPhysicianName",
    "PersonName",
    "PhysiciansOfRecord",
    "PregnancyStatus",
    "ProtocolName",
    "ReasonForStudy",
    "ReferencedImageSequence",
    "ReferencedPatientSequence",
    "ReferencedPerformedProcedureStepSequence",
    "ReferencedSOPInstanceUID",
    "ReferencedStudySequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianName",
    "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedProcedureComments",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "RequestingPhysician",
    "ResponsibleOrganization",
    "ResponsiblePerson",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepID",
    "SeriesDate",
    "SeriesDescription",
    "SeriesTime",
    "ServiceEpisodeDescription",
    "ServiceEpisodeID",
    "SmokingStatus",
    "SourceImageSequence",
    "StationName",
    "StorageMediaFileSetUID",
    "StudyComments",
    "StudyDate",
    "StudyDescription",
    "StudyID",
    "StudyTime",
    "SynchronizationFrameOfReferenceUID",
    "TimezoneOffsetFromUTC",
    "VerifyingObserverName",
    "VisitComments",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)


class UIDMapper:
    """Consistent, salted replacement of UIDs within one upload."""

    def __init__(self, salt: bytes | None = None) -> None:
        self._salt = salt or secrets.token_bytes(32)
        self._cache: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        if uid not in self._cache:
            digest = hashlib.sha256(self._salt + uid.encode()).digest()[:16]
            self._cache[uid] = f"2.25.{int.from_bytes(digest, 'big')}"
        return self._cache[uid]


def _copy(source: Dataset, target: Dataset, keywords: Iterable[str]) -> None:
    """Copy the allow-listed attributes; sequences are rebuilt item by item, never shared.

    Copying by keyword is what keeps private tags out at every depth: they have no keyword.
    """
    for keyword in keywords:
        if keyword not in source:
            continue
        try:  # pydicom parses values lazily: a kept value the decoder never read parses here
            element = source[keyword]
        except (ValueError, TypeError, BytesLengthException) as exc:
            raise InvalidDicomError(f"the DICOM attribute {keyword} is malformed") from exc
        if element.VR == VR.UN:  # bytes pydicom could not type: their content is unknown
            continue
        if not _holds_what_its_vr_promises(element):
            continue
        vetted = _vetted_codes(element)
        if vetted is None:
            continue
        element = vetted
        if keyword in KEEP_IN_ITEMS:
            if element.VR == VR.SQ:
                allowed = KEEP_IN_ITEMS[keyword]
                setattr(target, keyword, DicomSequence([_item(i, allowed) for i in element.value]))
        elif element.VR != VR.SQ:  # a value attribute sent as a sequence could nest anything
            target[keyword] = element


def _holds_what_its_vr_promises(element: DataElement) -> bool:
    """False for a kept string value that is not what its VR allows (a number, a code, a UID).

    Every string attribute on the allow-list is a number, a code string or a UID, so none can
    legitimately carry a name. One that does not parse as its VR (a patient name typed into
    PixelSpacing or RescaleType) is dropped rather than stored: its content cannot be vetted,
    and the decoder already treats an unusable optional value as absent.
    """
    pattern = _STRING_VR_PATTERNS.get(element.VR)
    if pattern is None:
        return True  # binary or sequence VRs: numbers and pixels, or rebuilt item by item
    return all(pattern.fullmatch(value) for value in _values(element))


def _values(element: DataElement) -> list[str]:
    """A string element's values, one or many, as stripped strings (none when empty)."""
    if element.value is None:
        return []
    values = element.value if element.VM > 1 else [element.value]
    return [str(value).strip() for value in values]


def _vetted_codes(element: DataElement) -> DataElement | None:
    """The element with only the code values the standard allows for it; None to drop it.

    An enumerated attribute with any value outside its list is dropped whole (the decoder
    treats an unusable optional value as absent, and a required one fails as invalid DICOM
    either way). ImageType keeps its enumerated first two values and loses the rest.
    """
    keyword = element.keyword
    if keyword == "ImageType":
        kept: list[str] = []
        for allowed, value in zip(IMAGE_TYPE_VALUES, _values(element), strict=False):
            if value not in allowed:
                break
            kept.append(value)
        return DataElement(element.tag, element.VR, kept) if kept else None
    enumerated = ENUMERATED_VALUES.get(keyword)
    if enumerated is None:
        return element
    return element if all(value in enumerated for value in _values(element)) else None


def _item(source: Dataset, keywords: Iterable[str]) -> Dataset:
    """A new item with only ``keywords``; empty items stay, so per-frame counts still match."""
    item = Dataset()
    _copy(source, item, keywords)
    return item


def deidentify(ds: Dataset, uids: UIDMapper) -> FileDataset:
    """A new object with only the allow-listed attributes and replaced UIDs."""
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise InputError(
            "the DICOM object declares burned-in annotation (text in the pixels); "
            "it cannot be de-identified automatically",
            code="dicom_burned_in_annotation",
        )
    clean = Dataset()
    _copy(ds, clean, (*KEEP, *FUNCTIONAL_GROUPS))
    for keyword in REPLACED_UIDS:
        if keyword in ds and ds.get(keyword):
            setattr(clean, keyword, uids(str(ds[keyword].value)))
    if "SOPInstanceUID" not in clean:
        clean.SOPInstanceUID = uids(secrets.token_hex(16))
    clean.PatientIdentityRemoved = "YES"
    clean.DeidentificationMethod = DEID_METHOD
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    clean.DeidentificationMethodCodeSequence = DicomSequence([code])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = clean.get(
        "SOPClassUID", ds.file_meta.get("MediaStorageSOPClassUID", "1.2.840.10008.5.1.4.1.1.4")
    )
    meta.MediaStorageSOPInstanceUID = clean.SOPInstanceUID
    meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    # pydicom builds an in-memory dataset from None, but types the argument as a path/buffer
    output = FileDataset(None, clean, file_meta=meta, preamble=b"\0" * 128)  # type: ignore[arg-type]
    # Written in the upload's own encoding: the pixel bytes are copied as they are, in its byte
    # order, and pydicom refuses to save a big-endian transfer syntax from a little-endian one.
    output.set_original_encoding(*ds.original_encoding)
    return output


def to_bytes(ds: FileDataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    if data[:128] != b"\0" * 128:  # never let a polyglot preamble through
        data = b"\0" * 128 + data[128:]
    return data
